"""Decode a block range of the raw lake into the decoded tables, partition by partition.

For each lake partition the range touches: read its raw `logs`, `transactions` and `blocks` rows once,
build every requested table, write each with the lake's merging writer (`merge_partition`: atomic,
locked, rows of the decoded blocks replaced, the rest of the partition kept). A partition with no
events still gets its (empty) file, so "decoded" is visible in the lake and in the catalog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chainlake.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENCY, resolve_rpc_url
from chainlake.decode import liquidity, reserves, sandwiches, swaps, transfers
from chainlake.decode.metadata import Metadata
from chainlake.decode.table import DecodeContext, DecodedTable
from chainlake.errors import ConfigError
from chainlake.ingest.lake import merge_partition, partition_files, read_lake_config, read_range
from chainlake.ingest.ranges import BlockRange, parse_block_range, split_by_partition
from chainlake.rpc import RpcClient

TABLES: dict[str, DecodedTable] = {t.name: t for t in
                                   (transfers.TABLE, swaps.TABLE, reserves.TABLE, liquidity.TABLE,
                                    sandwiches.TABLE)}


@dataclass
class DecodeReport:
    blocks: BlockRange
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        per = ", ".join(f"{name} {n:,}" for name, n in self.rows.items())
        return f"decoded blocks {self.blocks.first}..{self.blocks.last}: {per} rows in {self.seconds:.1f}s"


def resolve_tables(tables: Sequence[str] | str | None) -> list[DecodedTable]:
    names = [t.strip() for t in tables.split(",")] if isinstance(tables, str) else list(tables or TABLES)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TABLES]
    if unknown or not names:
        raise ConfigError(f"unknown decoded table {', '.join(unknown) or '(none)'}: choose from {', '.join(TABLES)}")
    return [TABLES[n] for n in names]


def decode(
    lake_dir: str | Path,
    blocks: str | BlockRange | tuple[int, int],
    tables: Sequence[str] | str | None = None,
    *,
    rpc_url: str | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    batch_size: int = DEFAULT_BATCH_SIZE,
    requests_per_second: float | None = None,
) -> DecodeReport:
    """Decode `blocks` (cryo-style "A:B", END exclusive, or an inclusive BlockRange) of the raw lake at
    `lake_dir` into `tables` (default all). `rpc_url` is needed only for tokens and pools whose metadata is
    not cached in the lake yet. The raw datasets the tables read must cover every block of the range."""
    started = time.monotonic()
    lake = Path(lake_dir)
    chosen = resolve_tables(tables)
    config = read_lake_config(lake)
    if config is None:
        raise ConfigError(f"{lake} is not a chainlake lake: ingest raw data first (chainlake ingest)")
    if isinstance(blocks, str):
        rng = parse_block_range(blocks, latest=lambda: _lake_head(lake))
    else:
        rng = BlockRange(*blocks)
    parts = split_by_partition(rng, config.partition_size)
    needed = sorted({dataset for table in chosen for dataset in table.reads})
    for dataset in needed:
        have = partition_files(lake, dataset)
        missing = [key for key, _ in parts if key not in have]
        if missing:
            raise ConfigError(f"raw dataset {dataset!r} has no partition {missing[0]} in {lake}: ingest blocks "
                              f"{rng.spec()} with --datasets {','.join(needed)} first")

    for _, part in parts:  # before writing anything: the raw blocks must all be there
        have = read_range(lake, "blocks", part.first, part.last).get_column("block_number")
        if have.len() != part.count:
            missing = sorted(set(part.numbers()) - set(have.to_list()))
            raise ConfigError(f"raw blocks {missing[0]}..{_run_end(missing)} are missing from {lake} "
                              f"({len(missing)} in {part.first}..{part.last}): ingest them first")

    def client() -> RpcClient:  # an explicit URL, else $ETH_RPC_URL, else the recorded devnet
        return RpcClient(resolve_rpc_url(rpc_url), max_concurrency=max_concurrency, batch_size=batch_size,
                         requests_per_second=requests_per_second)

    metadata = Metadata(lake, client)  # opened only if some token or pool is not cached yet
    report = DecodeReport(rng, {t.name: 0 for t in chosen})
    try:
        for key, part in parts:
            ctx = DecodeContext(
                logs=read_range(lake, "logs", part.first, part.last),
                transactions=read_range(lake, "transactions", part.first, part.last) if "transactions" in needed
                else pl.DataFrame(),
                blocks=read_range(lake, "blocks", part.first, part.last),
                metadata=metadata,
            )
            for table in chosen:
                rows = ctx.once(table.name, table.build)
                report.rows[table.name] += merge_partition(
                    lake, table.name, key, rows, pl.col("block_number").is_between(part.first, part.last),
                    table.keys, table.schema)
    finally:
        metadata.close()
    report.seconds = time.monotonic() - started
    return report


def _run_end(numbers: list[int]) -> int:
    """Last number of the first run of consecutive numbers."""
    end = numbers[0]
    for n in numbers[1:]:
        if n != end + 1:
            break
        end = n
    return end


def _lake_head(lake: Path) -> int:
    files = partition_files(lake, "blocks")
    if not files:
        raise ConfigError(f"no blocks in {lake}: ingest raw data first")
    last = list(files.values())[-1]
    return int(pl.scan_parquet(last).select(pl.col("block_number").max()).collect().item())
