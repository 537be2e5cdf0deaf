"""Reorgs: find where the lake left the node's canonical chain, and roll every table back to before it.

The lake's `blocks` dataset keeps each block's hash; `find_fork` compares the newest ones with what the
node now returns for the same heights (one batched request) and gives the first height that no longer
matches. `rollback` then removes every row of those blocks and later from every block-partitioned table
(raw and decoded: partitions entirely past the fork are deleted, the one it falls in is rewritten
atomically under its lock) and from the block-keyed derived tables (feature state tables, the training
frame), so no orphan row survives; re-ingesting from the fork restores the canonical chain.

Finality: a lake kept at the head by `chainlake follow` records in `_follow.json` (`FollowState`) the
block through which every followed dataset is complete (`head`) and its final watermark (`finalized` =
head - confirmations, never decreasing). `rollback` refuses a fork at or below the watermark with one
error before touching a file: a reorg deeper than the confirmation depth is an incident, not routine.
State tables (balances, pool reserves, feature states) hold "the value is the last row at or before
block X"; cutting rows >= fork keeps every answer for X < fork and leaves no value from the orphaned
blocks, and the re-ingest from the fork writes its anchor rows there (dropped again where unchanged).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from chainlake.errors import ConfigError, NodeError
from chainlake.ingest.lake import (
    PARTITION_DIR, _atomic_write_bytes, partition_lock, partition_range, scan_dataset, write_parquet_atomic,
)
from chainlake.rpc import RpcClient

DERIVED_PREFIXES = ("feature_",)
DERIVED_TABLES = ("training_frame",)
FOLLOW_FILE = "_follow.json"


@dataclass(frozen=True)
class FollowState:
    """What `chainlake follow` wrote: every followed dataset is complete through `head`; blocks up to
    `finalized` are final (no rollback reaches them)."""

    head: int
    finalized: int
    confirmations: int


def read_follow_state(lake_dir: str | Path) -> FollowState | None:
    """The lake's follow state, or None when it was never followed."""
    path = Path(lake_dir) / FOLLOW_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return FollowState(int(doc["head"]), int(doc["finalized"]), int(doc["confirmations"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid follow state: {exc}") from None


def write_follow_state(lake_dir: str | Path, state: FollowState) -> None:
    """Replace `_follow.json` atomically (readers see the old state or the new one)."""
    _atomic_write_bytes(Path(lake_dir) / FOLLOW_FILE, (json.dumps(asdict(state), indent=2) + "\n").encode())


def node_hashes(client: RpcClient, numbers: list[int]) -> dict[int, str | None]:
    """The node's block hash at each height (None where it has no such block), in one batch."""
    answers = client.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
    return {n: a["hash"].lower() if a else None for n, a in zip(numbers, answers)}


def find_fork(client: RpcClient, lake_dir: str | Path, depth: int = 128) -> int | None:
    """The first of the lake's newest `depth` blocks whose hash the node no longer has (None: no reorg).

    Raises when even the oldest compared block differs: the reorg is deeper than `depth`, or the lake
    holds another chain, and rolling back `depth` blocks would not be enough.
    """
    lake = (scan_dataset(lake_dir, "blocks").select("block_number", "block_hash")
            .sort("block_number", descending=True).head(depth).collect())
    if lake.height == 0:
        return None
    numbers = sorted(lake.get_column("block_number").to_list())
    ours = dict(zip(lake.get_column("block_number").to_list(), lake.get_column("block_hash").to_list()))
    theirs = node_hashes(client, numbers)
    differ = [n for n in numbers if theirs[n] != ours[n]]
    if not differ:
        return None
    if differ[0] == numbers[0] and len(numbers) == depth:
        raise NodeError(f"the lake's blocks {numbers[0]}..{numbers[-1]} all differ from the node's: a reorg deeper "
                        f"than {depth} blocks, or another chain")
    return differ[0]


@dataclass(frozen=True)
class Rollback:
    fork: int
    removed: dict[str, int]  # rows removed per table

    def summary(self) -> str:
        rows = sum(self.removed.values())
        return f"rolled back to block {self.fork - 1}: {rows:,} rows removed from {len(self.removed)} tables"


def rollback(lake_dir: str | Path, fork: int) -> Rollback:
    """Remove every row of blocks >= `fork` from the block-partitioned and block-keyed derived tables.

    Refuses (before writing anything) a fork at or below the follow state's final watermark. The state's
    head moves back to fork - 1 *before* any file is cut: a crash half-way leaves orphan rows that the
    next `find_fork` sees again, never a head that claims blocks the lake lost.
    """
    lake_dir = Path(lake_dir)
    state = read_follow_state(lake_dir)
    if state is not None and fork <= state.finalized:
        raise NodeError(f"reorg from block {fork} reaches final block {state.finalized} (followed with "
                        f"{state.confirmations} confirmations): the lake is left as is; re-ingest that range "
                        f"or delete {lake_dir / FOLLOW_FILE} to allow the rollback")
    if state is not None and state.head >= fork:
        write_follow_state(lake_dir, replace(state, head=fork - 1))
    removed: dict[str, int] = {}
    for folder in sorted(p for p in lake_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        partitions = sorted(folder.glob(f"{PARTITION_DIR}=*/*.parquet"))
        if partitions:
            count = sum(_cut_partition(path, fork) for path in partitions if not path.name.startswith("."))
        elif folder.name.startswith(DERIVED_PREFIXES) or folder.name in DERIVED_TABLES:
            count = sum(_cut_file(path, fork) for path in folder.glob("*.parquet") if not path.name.startswith("."))
        else:
            continue
        if count:
            removed[folder.name] = count
    return Rollback(fork, removed)


def _cut_partition(path: Path, fork: int) -> int:
    first, _ = partition_range(path.parent.name.split("=", 1)[1])
    with partition_lock(path.parent):
        if first >= fork:  # entirely past the fork
            rows = pq.ParquetFile(path).metadata.num_rows
            path.unlink()
            return rows
        return _cut_file(path, fork)


def _cut_file(path: Path, fork: int) -> int:
    """Rewrite a file without its rows of blocks >= fork (atomically); the number of rows removed."""
    table = pq.read_table(path)
    frame = pl.from_arrow(table)
    keep = frame.filter(pl.col("block_number") < fork)
    if keep.height == frame.height:
        return 0
    write_parquet_atomic(path, keep.to_arrow().cast(table.schema))
    return frame.height - keep.height
