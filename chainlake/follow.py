"""Following the chain head: each step catches the lake up with the node, rolling back reorged blocks first.

One `follow_step`:
1. `find_fork` compares the lake's newest block hashes with the node's; on a reorg, `rollback` removes every
   row of the orphaned blocks from every table (raw, decoded, features);
2. ingests the blocks the lake does not have yet (from the fork, or the lake's head + 1, to the node's
   head), decodes them, rebuilds the mempool table and the feature views;
3. checks the fork again: a reorg that happened *during* the step is rolled back at once (the next step
   re-ingests), so the lake never keeps rows of a chain the node has left.

`follow` repeats it, and polls the txpool between steps (`mempool_observations`, then the `mempool`
table rebuilt against the chain each step).

`confirmations` is how deep a reorg may be: `find_fork` compares that many blocks plus a margin, and refuses
(one clear error) if every compared block changed. Blocks deeper than that are final: no reorg touches them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chainlake.decode import decode
from chainlake.features import build_features
from chainlake.ingest import ingest
from chainlake.ingest.lake import scan_dataset
from chainlake.ingest.mempool import MempoolRecorder, build_mempool
from chainlake.ingest.reorg import find_fork, rollback
from chainlake.rpc import RpcClient

FOLLOW_DATASETS = ("blocks", "transactions", "logs")
REORG_MARGIN = 16  # blocks compared beyond `confirmations`


@dataclass
class FollowStep:
    head: int
    fork: int | None = None
    rolled_back: int = 0
    ingested: tuple[int, int] | None = None
    late_fork: int | None = None
    seconds: float = 0.0
    features: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"head {self.head}"]
        if self.fork is not None:
            parts.append(f"reorg from block {self.fork}: {self.rolled_back:,} rows rolled back")
        parts.append(f"ingested {self.ingested[0]}..{self.ingested[1]}" if self.ingested else "up to date")
        if self.late_fork is not None:
            parts.append(f"reorg during the step from block {self.late_fork}: rolled back, next step re-ingests")
        return ", ".join(parts) + f" ({self.seconds:.2f}s)"


def lake_head(lake_dir: str | Path) -> int | None:
    return scan_dataset(lake_dir, "blocks").select(pl.col("block_number").max()).collect().item()


def follow_step(client: RpcClient, url: str, lake_dir: str | Path, *, confirmations: int = 12,
                datasets: Sequence[str] = FOLLOW_DATASETS, start_block: int = 0, features: bool = True,
                partition_size: int | None = None) -> FollowStep:
    """One catch-up of the lake with the node (see the module docstring)."""
    started = time.monotonic()
    depth = confirmations + REORG_MARGIN
    step = FollowStep(head=client.block_number())
    fork = find_fork(client, lake_dir, depth)
    if fork is not None:
        step.fork, step.rolled_back = fork, sum(rollback(lake_dir, fork).removed.values())
    ours = lake_head(lake_dir)
    first = start_block if ours is None else ours + 1
    if first <= step.head:
        blocks = f"{first}:{step.head + 1}"
        ingest(url, blocks, list(datasets), lake_dir, partition_size=partition_size)
        decode(lake_dir, blocks, rpc_url=url)
        step.ingested = (first, step.head)
    late = find_fork(client, lake_dir, depth)
    if late is not None:
        rollback(lake_dir, late)
        step.late_fork = late
    if step.ingested or step.fork is not None:
        build_mempool(Path(lake_dir))
        if features:
            step.features = [r.view.name for r in build_features(lake_dir)]
    step.seconds = time.monotonic() - started
    return step


def follow(url: str, lake_dir: str | Path, *, confirmations: int = 12, interval: float = 2.0,
           steps: int | None = None, on_step: Callable[[FollowStep], None] | None = None,
           mempool_interval: float | None = 0.5, **options) -> list[FollowStep]:
    """`follow_step` every `interval` seconds, `steps` times (None: until interrupted).

    Between steps the txpool is polled every `mempool_interval` seconds (when the node serves
    `txpool_content`; None: never); each step writes what was seen as one observation window before it
    rebuilds the mempool table.
    """
    done: list[FollowStep] = []
    lake = Path(lake_dir)
    with RpcClient(url) as client:
        recorder = MempoolRecorder(lake) if mempool_interval and client.supports("txpool_content") else None
        while steps is None or len(done) < steps:
            observed = recorder is not None and recorder.flush() is not None
            step = follow_step(client, url, lake, confirmations=confirmations, **options)
            if observed and not (step.ingested or step.fork is not None):  # else the step rebuilt it already
                build_mempool(lake)
            done.append(step)
            if on_step is not None:
                on_step(step)
            if steps is None or len(done) < steps:
                wait(client, recorder, interval, mempool_interval or interval)
        if recorder is not None and recorder.flush() is not None:
            build_mempool(lake)
    return done


def wait(client: RpcClient, recorder: MempoolRecorder | None, seconds: float, poll: float) -> None:
    """Sleep `seconds`, polling the txpool every `poll` seconds meanwhile when recording."""
    end = time.monotonic() + seconds
    while True:
        if recorder is not None:
            recorder.observe(client.call("txpool_content"), client.block_number())
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(poll, left))
