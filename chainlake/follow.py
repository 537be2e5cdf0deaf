"""Following the chain head: each step catches the lake up with the node, rolling back reorged blocks first.

One `follow_step`:
1. `find_fork` compares the lake's newest block hashes with the node's; on a reorg, `rollback` removes every
   row of the orphaned blocks from every table (raw, decoded, features);
2. ingests every followed raw dataset (default: all of them, `FOLLOW_DATASETS`) for the blocks the lake
   does not have yet (from the fork, or the follow state's head + 1, to the node's head), decodes them,
   rebuilds the mempool table and the feature views;
3. checks the fork again: a reorg that happened *during* the step is rolled back at once (the next step
   re-ingests), so the lake never keeps rows of a chain the node has left;
4. records in `_follow.json` (`chainlake.ingest.reorg.FollowState`) the head every followed dataset is
   complete through and the final watermark, head - `confirmations`.

A step that fails half-way (the node drops out after `blocks` and before `traces` were written) does not
move the recorded head, so the next step re-ingests the same blocks (writes are idempotent): no dataset
is left with a gap.

Finality, and why there is no separate hot store. Every block goes into the partitioned lake as soon as
it lands; the newest `confirmations` blocks may still be rolled back, older ones are final: the watermark
only grows, and `rollback` refuses a fork at or below it (one clear error, the lake untouched), so a reorg
deeper than the confirmation depth stops the follower instead of silently rewriting final history. A
second store for unconfirmed blocks would mean a second write path, a merge at read time for every
reader (catalog, features, paper trading) and a promotion step that can fail on its own; write-then-
rollback is one code path, tested with `anvil_reorg` against a fresh ingest, and readers that want only
final data read blocks <= `finalized_block(lake)`. (The decision path's low-latency window is kept in
memory by `chainlake.features.online`, not here.)

The mempool: `follow` polls `txpool_content` on its own thread and connection (`MempoolPoller`) for as
long as it runs, so long steps (a first catch-up of thousands of blocks) miss no pending transaction;
each step writes what was seen as one observation window and rebuilds the `mempool` table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from chainlake.decode import decode
from chainlake.errors import ConfigError
from chainlake.features import build_features
from chainlake.ingest import ingest
from chainlake.ingest.lake import scan_dataset
from chainlake.decode.mempool_swaps import build_mempool_swaps
from chainlake.ingest.mempool import MempoolRecorder, build_mempool
from chainlake.ingest.pipeline import normalize_addresses, resolve_datasets
from chainlake.ingest.reorg import FollowState, find_fork, read_follow_state, rollback, write_follow_state
from chainlake.rpc import RpcClient

FOLLOW_DATASETS = ("blocks", "transactions", "logs", "traces", "balances")
REORG_MARGIN = 16  # blocks compared beyond `confirmations`


@dataclass
class FollowStep:
    head: int
    fork: int | None = None
    rolled_back: int = 0
    ingested: tuple[int, int] | None = None
    late_fork: int | None = None
    finalized: int = -1
    seconds: float = 0.0
    features: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"head {self.head}"]
        if self.fork is not None:
            parts.append(f"reorg from block {self.fork}: {self.rolled_back:,} rows rolled back")
        parts.append(f"ingested {self.ingested[0]}..{self.ingested[1]}" if self.ingested else "up to date")
        if self.late_fork is not None:
            parts.append(f"reorg during the step from block {self.late_fork}: rolled back, next step re-ingests")
        parts.append(f"final through {self.finalized}")
        return ", ".join(parts) + f" ({self.seconds:.2f}s)"


def lake_head(lake_dir: str | Path) -> int | None:
    return scan_dataset(lake_dir, "blocks").select(pl.col("block_number").max()).collect().item()


def finalized_block(lake_dir: str | Path) -> int | None:
    """The newest final block of a followed lake (None: never followed): no rollback goes below it."""
    state = read_follow_state(lake_dir)
    return None if state is None else state.finalized


def check_request(datasets: Sequence[str], addresses: Iterable[str], confirmations: int) -> list[str]:
    """The followed dataset names; one clear error, before any request or write, for a bad request."""
    names = [d.name for d in resolve_datasets(datasets)]
    if "blocks" not in names:
        raise ConfigError("follow needs the dataset 'blocks' (its hashes are how reorgs are found): "
                          f"add it to {', '.join(names)}")
    if "balances" in names and not normalize_addresses(addresses, "address"):
        raise ConfigError("dataset 'balances' needs addresses to track: pass --addresses (addresses=... in "
                          "Python), or leave balances out of --datasets")
    if not isinstance(confirmations, int) or confirmations < 0:
        raise ConfigError(f"confirmations must be a whole number >= 0, got {confirmations!r}")
    return names


def follow_step(client: RpcClient, url: str, lake_dir: str | Path, *, confirmations: int = 12,
                datasets: Sequence[str] = FOLLOW_DATASETS, addresses: Iterable[str] = (),
                tokens: Iterable[str] = (), start_block: int = 0, features: bool = True,
                partition_size: int | None = None) -> FollowStep:
    """One catch-up of the lake with the node (see the module docstring)."""
    started = time.monotonic()
    names, addresses, tokens = check_request(datasets, addresses, confirmations), list(addresses), list(tokens)
    depth = confirmations + REORG_MARGIN
    step = FollowStep(head=client.block_number())
    fork = find_fork(client, lake_dir, depth)
    if fork is not None:
        step.fork, step.rolled_back = fork, sum(rollback(lake_dir, fork).removed.values())
    first = next_block(lake_dir, start_block)
    if first <= step.head:
        blocks = f"{first}:{step.head + 1}"
        ingest(url, blocks, names, lake_dir, addresses=addresses, tokens=tokens, partition_size=partition_size)
        decode(lake_dir, blocks, rpc_url=url)
        step.ingested = (first, step.head)
    late = find_fork(client, lake_dir, depth)
    if late is not None:
        rollback(lake_dir, late)
        step.late_fork = late
    step.finalized = record_state(lake_dir, confirmations)
    if step.ingested or step.fork is not None:
        rebuild_mempool(lake_dir)
        if features:
            step.features = [r.view.name for r in build_features(lake_dir)]
    step.seconds = time.monotonic() - started
    return step


def rebuild_mempool(lake_dir: str | Path) -> None:
    """The `mempool` table (observations joined with the chain) and its decoded router swaps, which the
    mempool features read: both, or the features would see pending flow frozen at the last full build."""
    build_mempool(Path(lake_dir))
    build_mempool_swaps(lake_dir)


def next_block(lake_dir: str | Path, start_block: int) -> int:
    """Where to ingest from: past the head every dataset is complete through (the follow state), else past
    the lake's newest block (a lake filled by `chainlake ingest`), else `start_block`."""
    state = read_follow_state(lake_dir)
    ours = lake_head(lake_dir)
    if state is not None and ours is not None:
        return min(state.head, ours) + 1
    return start_block if ours is None else ours + 1


def record_state(lake_dir: str | Path, confirmations: int) -> int:
    """Write the follow state after a complete step: head = the lake's head, the final watermark raised
    to head - confirmations (never lowered); returns the watermark."""
    head = lake_head(lake_dir)
    if head is None:
        return -1
    old = read_follow_state(lake_dir)
    state = FollowState(head=head, finalized=max(head - confirmations, old.finalized if old else -1),
                        confirmations=confirmations)
    if state != old:
        write_follow_state(lake_dir, state)
    return state.finalized


def follow(url: str, lake_dir: str | Path, *, confirmations: int = 12, interval: float = 2.0,
           steps: int | None = None, on_step: Callable[[FollowStep], None] | None = None,
           mempool_interval: float | None = 0.5, **options) -> list[FollowStep]:
    """`follow_step` every `interval` seconds, `steps` times (None: until interrupted).

    The txpool is polled every `mempool_interval` seconds on a thread of its own, during steps as well as
    between them (when the node serves `txpool_content`; None: never); each step writes what was seen as
    one observation window before it rebuilds the mempool table.
    """
    check_request(options.get("datasets", FOLLOW_DATASETS), options.get("addresses", ()), confirmations)
    done: list[FollowStep] = []
    lake = Path(lake_dir)
    with RpcClient(url) as client:
        poll = mempool_interval and client.supports("txpool_content")
        with MempoolPoller(url, lake, mempool_interval if poll else None) as poller:
            try:
                while steps is None or len(done) < steps:
                    observed = poller.flush()
                    step = follow_step(client, url, lake, confirmations=confirmations, **options)
                    if observed and not (step.ingested or step.fork is not None):  # else the step rebuilt it
                        rebuild_mempool(lake)
                    done.append(step)
                    if on_step is not None:
                        on_step(step)
                    if steps is None or len(done) < steps:
                        time.sleep(interval)
            finally:  # Ctrl-C is how a follower normally stops: keep what the txpool showed since the last step
                if poller.flush():
                    rebuild_mempool(lake)
    return done


class MempoolPoller:
    """Polls `txpool_content` every `interval` seconds on its own thread and connection (None: never).

    A thread, so polling goes on while a step ingests; its own `RpcClient`, so polls never queue behind a
    step's requests. `flush` writes the window seen so far (under the lock the polls take) and re-raises
    a poll's failure in the caller.
    """

    def __init__(self, url: str, lake: Path, interval: float | None):
        self.url, self.interval = url, interval
        self.recorder = MempoolRecorder(lake)
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> "MempoolPoller":
        if self.interval:
            self.thread = threading.Thread(target=self._run, name="chainlake-mempool", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()

    def _run(self) -> None:
        try:
            with RpcClient(self.url) as client:
                while not self.stop.is_set():
                    content, head = client.call("txpool_content"), client.block_number()
                    with self.lock:
                        self.recorder.observe(content, head)
                    self.stop.wait(self.interval)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread by `flush`
            self.error = exc

    def flush(self) -> bool:
        """Write the observations since the last flush as one window; True when there were any."""
        with self.lock:
            written = self.recorder.flush() is not None
        if self.error is not None:
            raise self.error
        return written
