"""Decision latency on a live devnet: from a new head to an order being ready, online vs the naive lake path.

Starts a devnet, mines a warm-up, fills a lake (`follow_step`), trains the agent's policies on it
(`rl.pipeline.train`, the tabular policy is used), then mines blocks one at a time. Per block:

- **online decision** (the measured path): the follower polls `eth_blockNumber`; from the poll that shows the
  new head, `OnlineFeatures.on_block` fetches the block (one JSON-RPC batch), decodes it into its window
  and computes the agent's `DEFAULT_FEATURES` (fetch / decode / features), then the policy acts (policy);
- **ingestion lag**: after the decision, the full `chainlake.follow.follow_step` (ingest, decode, mempool,
  every feature view) catches the lake up; the lag is head - the lake's last block when the head is seen,
  and the seconds from seeing the head to the lake holding it;
- **peer (naive path)**: follow_step + `training_frame` for the block + the policy, i.e. what a decision costs
  when it waits for the lake (the same follow_step run, plus its own training_frame and policy call).

The decision path runs as its own process, as a deployment would run a latency-critical decision service
apart from the lake writer, set up the way such a service is: polars with one thread (POLARS_MAX_THREADS=1;
its pool is process-wide), and Python's garbage collector run between blocks rather than in the middle of
a decision (`gc.freeze` after start-up, automatic collection off, `gc.collect` while waiting). The lake path
runs after the decision of each block, not at the same time, so the two do not contend for the cores. Between blocks the
decision path reads again the lake tables the lake path rebuilt (`OnlineFeatures.refresh`: the mempool), as
a service does while it waits; `on_block` still checks them, so nothing older is ever served.

Prints p50 / p99 / max and writes them, with the machine, to bench/RESULTS.md (`make bench-follow`).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # results_md, also when imported
from results_md import write_section  # noqa: E402

# bench/rl.py would shadow the `rl` package: the project root goes first for the imports below
sys.path[:] = [str(BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

from chainlake.devnet import Devnet  # noqa: E402
from chainlake.features import training_frame  # noqa: E402
from chainlake.features.online import OnlineFeatures  # noqa: E402
from chainlake.follow import follow_step, lake_head  # noqa: E402
from chainlake.rpc import RpcClient  # noqa: E402
from rl.data import DEFAULT_FEATURES, DIRECTIONAL, column_name  # noqa: E402
from rl.pipeline import AgentConfig, load_policies, train  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "follow"  # git-ignored
GOAL_MS = 50.0
DATASETS = ("blocks", "transactions", "logs")  # what the features read; follow_step ingests only these


def observation(values: dict, names: list[str], flip: bool) -> np.ndarray:
    """The env's observation of a flat book: features (oriented to the base, NaN for null), position 0, cash 1."""
    feats = [np.nan if values[n] is None else float(values[n]) for n in names]
    if flip:
        feats = [-v if any(k in n for k in DIRECTIONAL) else v for v, n in zip(feats, names)]
    return np.array([*feats, 0.0, 1.0], dtype=np.float32)


def wait_for_head(client: RpcClient, after: int) -> tuple[int, float]:
    """Poll eth_blockNumber until the head passes `after`; (head, monotonic time of the poll that showed it)."""
    while True:
        head = client.block_number()
        if head > after:
            return head, time.perf_counter()
        time.sleep(0.001)


def decide(online: OnlineFeatures, client: RpcClient, policy, names: list[str], flip: bool, seen: int) -> dict:
    """Wait for a head after `seen`, compute its features online and let the policy act: the measured path."""
    head, t0 = wait_for_head(client, seen)
    values = online.on_block(head)
    t1 = time.perf_counter()
    policy.act(observation(values, names, flip))
    t2 = time.perf_counter()
    return {"head": head, "fetch": online.timings["fetch"], "decode": online.timings["decode"],
            "features": online.timings["features"], "policy": t2 - t1, "decision": t2 - t0, "t0": t0}


def decision_service(conn, lake: str, url: str, models: str, pool: str, flip: bool) -> None:
    """The decision path in a process of its own: for each `seen` received, `decide` and send the result."""
    policy, _ = load_policies(Path(models), names=("tabular",))["tabular"]
    names = [column_name(f) for f in DEFAULT_FEATURES]
    with RpcClient(url) as client, OnlineFeatures(lake, url, DEFAULT_FEATURES, pool=pool) as online:
        gc.freeze()  # what start-up allocated stays out of every later collection
        gc.disable()  # collections happen between blocks (below), not in the middle of a decision
        conn.send(client.block_number())
        while (seen := conn.recv()) is not None:
            if seen == "refresh":  # between blocks: the lake writer rebuilt the mempool
                online.refresh()
                gc.collect()
                conn.send(None)
                continue
            conn.send(decide(online, client, policy, names, flip, seen))


class OwnProcess:
    """The decision path in its own process, started with POLARS_MAX_THREADS=1 (`decision_service`)."""

    def __init__(self, lake, url, models, pool, flip):
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: polars reads the variable at import
        self.conn, child = ctx.Pipe()
        saved = os.environ.get("POLARS_MAX_THREADS")
        os.environ["POLARS_MAX_THREADS"] = "1"
        try:
            self.process = ctx.Process(target=decision_service, args=(child, str(lake), url, str(models), pool, flip))
            self.process.start()
        finally:
            if saved is None:
                del os.environ["POLARS_MAX_THREADS"]
            else:
                os.environ["POLARS_MAX_THREADS"] = saved
        self.seen = self.conn.recv()

    def decide(self, seen: int) -> dict:
        self.conn.send(seen)
        return self.conn.recv()

    def refresh(self) -> None:
        self.conn.send("refresh")
        self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(30)


def run(warmup: int, blocks: int, seed: int, txs: int) -> dict[str, list[float]]:
    shutil.rmtree(WORK, ignore_errors=True)
    lake, models = WORK / "lake", WORK / "models"
    series: dict[str, list[float]] = {k: [] for k in ("fetch", "decode", "features", "policy", "decision",
                                                      "lag_blocks", "lag_s", "follow_step", "naive")}
    with Devnet(seed=seed, txs_per_block=txs) as dn, RpcClient(dn.url) as client:
        dn.run(warmup)
        follow_step(client, dn.url, lake, datasets=DATASETS)
        result = train(lake, AgentConfig(), models_dir=models)
        policy, _ = load_policies(models, names=("tabular",))["tabular"]
        pool, flip = result.episode.market.pool, not result.episode.market.base_is_token0
        names = [column_name(f) for f in DEFAULT_FEATURES]
        print(f"warm-up: {warmup} blocks, lake head {lake_head(lake)}, pool {pool}, policy trained", flush=True)
        decider = OwnProcess(lake, dn.url, models, pool, flip)
        try:
            seen = decider.seen
            for _ in range(blocks):
                dn.market.step()
                decision = decider.decide(seen)
                head, t0 = decision["head"], decision["t0"]
                lag = head - lake_head(lake)
                step_start = time.perf_counter()
                follow_step(client, dn.url, lake, datasets=DATASETS)
                t3 = time.perf_counter()
                entities = pl.DataFrame({"pool": [pool], "block_number": [head + 1]})
                row = training_frame(entities, DEFAULT_FEATURES, lake_dir=lake, full_feature_names=True).to_dicts()[0]
                policy.act(observation(row, names, flip))
                t4 = time.perf_counter()
                decider.refresh()  # idle until the next block: read the mempool the lake path just rebuilt
                for key in ("fetch", "decode", "features", "policy", "decision"):
                    series[key].append(decision[key])
                for key, value in (("lag_blocks", lag), ("lag_s", t3 - t0), ("follow_step", t3 - step_start),
                                   ("naive", t4 - step_start)):
                    series[key].append(value)
                seen = head
        finally:
            decider.close()
    return series


def table(series: dict[str, list[float]]) -> str:
    rows = [("decision latency (online)", "decision", "naive"), ("  fetch (node, one batch)", "fetch", None),
            ("  decode + window", "decode", None), ("  features (7 views)", "features", None),
            ("  policy", "policy", None),
            ("follow_step (lake path)", "follow_step", None), ("ingestion lag, seconds", "lag_s", None)]
    lines = ["| measure | p50 ms | p99 ms | max ms | peer: follow_step + training_frame + policy, p50 / p99 ms |",
             "|---|---:|---:|---:|---:|"]
    for label, key, peer in rows:
        values = np.array(series[key]) * 1e3
        peer_text = ""
        if peer:
            p = np.array(series[peer]) * 1e3
            peer_text = f"{np.percentile(p, 50):.1f} / {np.percentile(p, 99):.1f}"
        lines.append(f"| {label} | {np.percentile(values, 50):.1f} | {np.percentile(values, 99):.1f} | "
                     f"{values.max():.1f} | {peer_text} |")
    lag = np.array(series["lag_blocks"])
    lines.append(f"| ingestion lag, blocks behind the head when it is seen | {np.percentile(lag, 50):.0f} | "
                 f"{np.percentile(lag, 99):.0f} | {lag.max():.0f} | |")
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=400, help="blocks mined before following")
    parser.add_argument("--blocks", type=int, default=100, help="blocks measured, one at a time")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--txs-per-block", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    parser.add_argument("--runs", type=int, default=1, help="runs, one devnet each, all printed")
    args = parser.parse_args()
    text = ""
    for _ in range(args.runs):
        load_start = os.getloadavg()[0]  # the machine may be shared: other work moves the tail
        series = run(args.warmup, args.blocks, args.seed, args.txs_per_block)
        p99 = float(np.percentile(np.array(series["decision"]) * 1e3, 99))
        text += (f"Decision process: `OnlineFeatures` in a process of its own (POLARS_MAX_THREADS=1, garbage "
                 f"collected between blocks). Devnet: seed {args.seed}, {args.txs_per_block} txs/block, warm-up "
                 f"{args.warmup} blocks, {args.blocks} blocks measured; features: rl.data.DEFAULT_FEATURES (7 "
                 f"views); policy: tabular. Machine: {machine()}; load average (1 min) {load_start:.2f} at the "
                 f"start, {os.getloadavg()[0]:.2f} at the end.\n\n{table(series)}\n"
                 f"Goal p99 < {GOAL_MS:.0f} ms: {'met' if p99 < GOAL_MS else 'missed'} (p99 {p99:.1f} ms).\n\n")
    print(text)
    if not args.no_write:
        write_section("follow", text, "Following the head: decision latency, online features vs the lake path",
                      "`make bench-follow` (= `.venv/bin/python bench/follow.py`). The part between the markers "
                      "below is rewritten by every run; the analysis under it is not.")


if __name__ == "__main__":
    main()
