"""`ingest`: the one collect pipeline every dataset goes through.

Order matters: everything that can be wrong with the request (datasets, addresses, URL, the node, the
block range against the head, the lake's chain and partition size, the RPC methods each dataset needs)
is checked *before* the first directory or file is created, so a bad request leaves nothing behind.
Then each dataset is collected partition by partition (two partitions fetched at once, written in block
order while the next are fetched) and merged into the lake atomically; an error or Ctrl-C stops at once,
having written only the partitions before the failing one.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from chainlake.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONCURRENCY
from chainlake.errors import ConfigError, MethodUnsupported
from chainlake.ingest.dataset import Context, Dataset
from chainlake.ingest.datasets import DATASETS
from chainlake.ingest.lake import LakeConfig, check_lake_config, merge_partition, read_lake_config, write_lake_config
from chainlake.ingest.ranges import BlockRange, parse_block_range, split_by_partition
from chainlake.rpc import RpcClient

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
PARTITION_WORKERS = 2


@dataclass
class IngestReport:
    """What one `ingest` call did."""

    blocks: BlockRange
    chain_id: int
    lake_dir: Path
    partition_size: int
    rows: dict[str, int] = field(default_factory=dict)  # rows collected per dataset in this run
    partitions: dict[str, list[str]] = field(default_factory=dict)  # partition keys written per dataset
    methods: dict[str, dict[str, str]] = field(default_factory=dict)  # dataset -> need -> RPC method used
    dataset_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        per = ", ".join(f"{name} {rows:,} rows" for name, rows in self.rows.items())
        files = sum(len(keys) for keys in self.partitions.values())
        return (f"blocks {self.blocks.first}..{self.blocks.last} of chain {self.chain_id}: {per}; "
                f"{files} partition files in {self.lake_dir} in {self.seconds:.2f}s")


def normalize_addresses(values: Iterable[str] | str | None, what: str) -> tuple[str, ...]:
    """Lowercase, deduplicated 0x addresses; one clear error for the first malformed one."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out: list[str] = []
    for value in values:
        text = str(value).strip()
        if not _ADDRESS.match(text):
            raise ConfigError(f"bad {what} {value!r}: expected 0x followed by 40 hex digits")
        if text.lower() not in out:
            out.append(text.lower())
    return tuple(out)


def resolve_datasets(datasets: Sequence[str] | str) -> list[Dataset]:
    names = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else [str(d).strip() for d in datasets]
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        raise ConfigError(f"no dataset given: choose from {', '.join(DATASETS)}")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ConfigError(f"unknown dataset {unknown[0]!r}: choose from {', '.join(DATASETS)}")
    return [DATASETS[n] for n in names]


def resolve_range(blocks: str | BlockRange | tuple[int, int], head: int) -> BlockRange:
    """A range spec or an inclusive (first, last) pair, checked against the chain head."""
    if isinstance(blocks, str):
        return parse_block_range(blocks, latest=head)
    if isinstance(blocks, tuple) and len(blocks) == 2:
        rng = BlockRange(*blocks)
        if rng.last > head:
            raise ConfigError(f"block range {rng.first}..{rng.last} goes beyond the chain head {head}")
        return rng
    raise ConfigError(f"bad block range {blocks!r}: expected 'START:END' or BlockRange(first, last)")


def plan_methods(client: RpcClient, dataset: Dataset) -> dict[str, str]:
    """Pick, for each need of the dataset, the first method the node serves (probes, cached)."""
    chosen = {need: client.first_supported(alternatives, dataset.name) for need, alternatives in dataset.needs.items()}
    for need, alternatives in dataset.optional.items():
        try:
            chosen[need] = client.first_supported(alternatives, dataset.name)
        except MethodUnsupported:
            pass
    return chosen


def ingest(
    rpc_url: str,
    blocks: str | BlockRange | tuple[int, int],
    datasets: Sequence[str] | str,
    lake_dir: str | Path,
    *,
    addresses: Iterable[str] = (),
    tokens: Iterable[str] = (),
    progress: bool = False,
    partition_size: int | None = None,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    batch_size: int = DEFAULT_BATCH_SIZE,
    requests_per_second: float | None = None,
    max_retries: int = 5,
    timeout: float = 60.0,
    options: dict | None = None,
) -> IngestReport:
    """Extract `datasets` for `blocks` from the node at `rpc_url` into the Parquet lake at `lake_dir`.

    `blocks` is a cryo-style spec (`"0:1000"` = blocks 0..999, `"100:latest"`) or an inclusive
    `BlockRange(first, last)`. `addresses` / `tokens` configure `balances`. Re-running a range is
    idempotent; overlapping ranges merge. Raises ChainlakeError (ConfigError, NodeError,
    MethodUnsupported) with a one-line message; on any validation error nothing is written.
    """
    started = time.monotonic()
    chosen = resolve_datasets(datasets)
    tracked = normalize_addresses(addresses, "address")
    token_list = normalize_addresses(tokens, "token")
    if any(d.name == "balances" for d in chosen) and not tracked:
        raise ConfigError("dataset 'balances' needs at least one address to track: pass --addresses "
                          "(addresses=... in Python)")
    if partition_size is not None and (not isinstance(partition_size, int) or partition_size < 1):
        raise ConfigError(f"partition size must be a positive integer, got {partition_size!r}")
    lake = Path(lake_dir)
    if lake.exists() and not lake.is_dir():
        raise ConfigError(f"lake {lake} exists and is not a directory")
    read_lake_config(lake)  # a corrupt _lake.json fails here, before the network

    with RpcClient(rpc_url, timeout=timeout, max_concurrency=max_concurrency, batch_size=batch_size,
                   requests_per_second=requests_per_second, max_retries=max_retries) as client:
        chain_id, head = client.probe()
        rng = resolve_range(blocks, head)
        config = check_lake_config(lake, chain_id, partition_size)
        plans = {d.name: plan_methods(client, d) for d in chosen}
        # Validation is over: from here on, the lake is written.
        write_lake_config(lake, config)
        report = IngestReport(rng, chain_id, lake, config.partition_size)
        with _progress(progress) as bar:
            for dataset in chosen:
                ctx = Context(client, chain_id, head, plans[dataset.name], tracked, token_list, dict(options or {}))
                _ingest_dataset(dataset, ctx, rng, lake, config, report, bar)
    report.seconds = time.monotonic() - started
    return report


def _ingest_dataset(dataset: Dataset, ctx: Context, rng: BlockRange, lake: Path, config: LakeConfig,
                    report: IngestReport, bar) -> None:
    """Collect partitions in worker threads (at most PARTITION_WORKERS at once) and write them here, in
    block order, each while the next ones are fetched.

    On any error (a partition that fails, Ctrl-C), partitions not started are cancelled and the error is
    raised at once: this run has then written exactly the partitions before the failing one, never a
    later one, so what it added to the lake is a gap-free prefix of the range.
    """
    started = time.monotonic()
    parts = iter(split_by_partition(rng, config.partition_size))
    task = bar.add_task(dataset.name, total=rng.count) if bar is not None else None
    done: list[tuple[str, int]] = []
    pending: deque[tuple[str, BlockRange, Future]] = deque()
    pool = ThreadPoolExecutor(PARTITION_WORKERS, thread_name_prefix="chainlake-part")

    def submit_next() -> None:
        part = next(parts, None)
        if part is not None:
            pending.append((*part, pool.submit(dataset.collect, ctx, part[1])))

    try:
        for _ in range(PARTITION_WORKERS):
            submit_next()
        while pending:
            key, sub, future = pending.popleft()
            rows = future.result()
            submit_next()  # keeps PARTITION_WORKERS fetches going while this partition is written
            merge_partition(lake, dataset.name, key, rows, dataset.replace_filter(ctx, sub), dataset.keys,
                            dataset.schema, dataset.normalize)
            done.append((key, rows.height))
            if bar is not None:
                bar.advance(task, sub.count)
    except BaseException:
        # Do not wait for a fetch still running: its rows are never written, and the client it uses is
        # closed by `ingest` on the way out (so it stops at its next request).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    report.rows[dataset.name] = sum(rows for _, rows in done)
    report.partitions[dataset.name] = [key for key, _ in done]
    report.methods[dataset.name] = dict(ctx.methods)
    report.dataset_seconds[dataset.name] = time.monotonic() - started


def _progress(enabled: bool):
    """A rich progress bar on a terminal (stderr), nothing otherwise."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return nullcontext(None)
    return Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(), TextColumn("blocks"),
                    TimeElapsedColumn(), console=console, transient=False)
