"""Benchmark: chainlake's trading env and backtester vs gym-anytrading and vectorbt, on one synthetic AMM market.

    .venv/bin/python bench/rl.py [--bars 1000000] [--env-steps 1000000] [--books 1,64,1024,4096,16384]
                                 [--ref-rows 100000] [--repeats 3] [--seed 7] [--only NAME,...]
                                 [--quick] [--no-results]

What it measures, in one run (issue 4 §4):

1. A deterministic synthetic market (seed `--seed`), written once under `bench/.work-rl/` (git-ignored): a
   WETH/USDC Uniswap V2 pool over `--bars` + 2 blocks of 12 s. The mid follows a GBM (60 %/year
   volatility); the pool is constant product (reserves sqrt(k / mid) and sqrt(k x mid)) with its depth
   sqrt(k) a slow random walk around 15,000 WETH x 30M USDC (LPs adding and removing); the base fee
   moves by at most 12.5 % a block (EIP-1559), mean-reverting around 20 gwei; pool fee 0.3 %; gas is
   charged in USDC at the mid. It becomes a `PoolMarket` + `Episode` (decisions at every block, stride 1,
   `--bars` decision rows; features: log returns over 1, 8, 64 blocks and the base fee, as known at the
   decision). Two signal series (0 sell / 1 hold / 2 buy per row): "momentum" (the 64-block return
   beyond +-2 of its standard deviations) and "random" (uniform, a stress test: a trade attempt at two
   rows in three). The close series given to the peers is the mid known at each decision.
2. Env steps/s, random actions, `--env-steps` env-steps (book-steps) per contender on the same mid:
   - `TradingEnv` (one book, the Gymnasium env) and `VectorTradingEnv` with N books (`--books`), N books
     stepped per call, random starts, 10,000-step episodes with autoreset; env-steps/s = N x calls/s;
   - gym-anytrading's `StocksEnv` (in `bench/.rl-venv`, see `bench/rl_peers.py`).
   Timed: the step loop only (actions precomputed, reset excluded); best of `--repeats` (a contender
   whose run takes over 20 s is run once).
3. Backtest of each signal series over the same `--bars` rows (fees on, latency 1 block):
   - chainlake `simulate_signals` (rl/fast_backtest.py, numba): the compiled loop, equity net and gross,
     position and fills; `fast_backtest` adds the polars ledger and the 16 metrics: the full
     `BacktestResult`. "first call" is in a fresh process with an empty numba cache (compilation);
   - chainlake's reference event-driven backtester (`rl.backtest.backtest` with `Scripted(signals)`,
     stepping the env decision by decision) on the first `--ref-rows` rows only (labelled; its 1M-row
     time is extrapolated linearly), and checked equal, to the last bit, to `fast_backtest` on that slice;
   - vectorbt `Portfolio.from_signals(close, entries, exits, fees=0.003, init_cash, size=trade size in
     base, size_type="amount", accumulate=True)` with its numba engine and with its Rust engine
     (vectorbt-rust), alone and followed by `.value()` (the equity curve).
   Same starting cash (100,000 USDC) and trade size (25 % of it in WETH at the first mid) for all.
4. Each contender runs in its own subprocess. Prints the tables and (unless `--no-results`) rewrites the
   RL section of bench/RESULTS.md between its markers (the analysis below them is kept). Exits non-zero if
   a contender fails or the reference and the compiled backtest disagree.

What each models: see `MODELS` below (printed with the tables).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results_md, also when imported
from results_md import RESULTS, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK_ROOT = BENCH / ".work-rl"  # git-ignored; one folder per (bars, seed)
PEER_VENV = BENCH / ".rl-venv"  # git-ignored; gym-anytrading + vectorbt (they pull pandas)
PEER_PINS = ("gym-anytrading==2.0.0", "vectorbt==1.2.0", "vectorbt-rust==1.2.0")
PEER_SCRIPT = BENCH / "rl_peers.py"

BLOCK_SECONDS = 12.0
FIRST_BLOCK = 21_000_000
FEE = 0.003
INITIAL_QUOTE = 100_000.0
TRADE_FRACTION = 0.25
EPISODE_LENGTH = 10_000  # vector env: steps per episode before autoreset
SIGNALS = ("momentum", "random")
FEATURES = ("mid_price__log_return_1", "mid_price__log_return_8", "mid_price__log_return_64",
            "gas_price__base_fee_gwei")

MODELS = {
    "chainlake": "constant-product execution against the pool's reserves (price impact of size), pool fee, gas "
                 "(base fee + tip, in quote), liquidity cap (5 % of a reserve), cash and holdings caps, 1-block "
                 "latency (decide at b knowing blocks < b, execute at b + 1 against the reserves at the end of b), "
                 "marks at the mid, a gross (no fee, no gas) shadow book",
    "gym-anytrading": "long/short flip on a price series; reward = price change while long; profit charged fixed "
                      "percentages (1 % bid, 0.5 % ask) per round trip; all-in position; no slippage, no gas, no "
                      "latency, no balances",
    "vectorbt": "fills at the bar's close (no latency), percentage fee (0.3 %), cash and holdings caps, fixed "
                "size per signal; no price impact, no gas, no liquidity cap",
}


# ---------------------------------------------------------------------------------------------- data

def work_dir(bars: int, seed: int) -> Path:
    return WORK_ROOT / f"bars{bars}-seed{seed}"


def base_fee_path(n: int, rng: np.random.Generator) -> np.ndarray:
    """EIP-1559-like: log base fee mean-reverting to log 20 gwei, each block's move capped at +-12.5 %."""
    cap = math.log(1.125)
    shocks = rng.normal(0.0, 0.04, n)
    out = np.empty(n)
    x, target = math.log(20.0), math.log(20.0)
    for i in range(n):  # once per data set (cached in market.npz)
        x += max(-cap, min(cap, 0.002 * (target - x) + shocks[i]))
        out[i] = x
    return np.exp(out)


def generate(bars: int, seed: int) -> Path:
    """Write market.npz (reserves, base fee, features, signals, close, meta) unless it is there already."""
    work = work_dir(bars, seed)
    path = work / "market.npz"
    if path.exists():
        return work
    work.mkdir(parents=True, exist_ok=True)
    print(f"generating a {bars:,}-bar market (seed {seed}) ...", flush=True)
    rng = np.random.default_rng(seed)
    n = bars + 2  # decisions at blocks 1..n-2: each has a known block before it and its mark block after it
    sigma = 0.60 / math.sqrt(365 * 24 * 3600 / BLOCK_SECONDS)
    mid = 2_000.0 * np.exp(np.cumsum(rng.normal(-0.5 * sigma ** 2, sigma, n)))
    depth = 15_000.0 * math.sqrt(2_000.0) * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))  # sqrt(k)
    reserve_base, reserve_quote = depth / np.sqrt(mid), depth * np.sqrt(mid)
    base_fee = base_fee_path(n, rng)
    mid = reserve_quote / reserve_base  # the pool's own mid (same up to rounding)
    known = np.arange(n - 2)  # the block known at decision row r (decision block index r + 1)
    log_mid = np.log(mid)

    def log_return(k):
        out = np.full(n - 2, np.nan)
        out[k:] = log_mid[known[k:]] - log_mid[known[k:] - k]
        return out

    features = np.stack([log_return(1), log_return(8), log_return(64), base_fee[known]], axis=1)
    lr64 = features[:, 2]
    threshold = 2.0 * sigma * 8.0  # two standard deviations of a 64-block return
    momentum = np.where(lr64 > threshold, 2, np.where(lr64 < -threshold, 0, 1)).astype(np.int64)
    random = rng.integers(0, 3, n - 2).astype(np.int64)
    close = mid[known]
    meta = {"bars": bars, "seed": seed, "blocks": n, "first_block": FIRST_BLOCK, "fee": FEE,
            "initial_quote": INITIAL_QUOTE, "trade_size": TRADE_FRACTION * INITIAL_QUOTE / float(close[0]),
            "signals": list(SIGNALS), "features": list(FEATURES), "sigma_per_block": sigma}
    np.savez(path, reserve_base=reserve_base, reserve_quote=reserve_quote, base_fee_gwei=base_fee,
             features=features, signal_momentum=momentum, signal_random=random, close=close, meta=json.dumps(meta))
    return work


def load(work: Path):
    """(Episode, signals by name, meta) from market.npz: the PoolMarket and Episode built directly."""
    from rl.data import Episode
    from rl.market import PoolMarket

    data = np.load(work / "market.npz")
    meta = json.loads(str(data["meta"]))
    n = meta["blocks"]
    blocks = np.arange(FIRST_BLOCK, FIRST_BLOCK + n, dtype=np.int64)
    rb, rq = data["reserve_base"], data["reserve_quote"]
    market = PoolMarket(pool="0xsynthetic-weth-usdc", base_token="0xweth", quote_token="0xusdc", base_symbol="WETH",
                        quote_symbol="USDC", base_is_token0=True, fee=FEE, blocks=blocks, reserve_base=rb,
                        reserve_quote=rq, base_fee_gwei=data["base_fee_gwei"], eth_price_quote=rq / rb)
    as_of = blocks[1:-1]
    episode = Episode(market, as_of, data["features"], FEATURES, np.zeros(len(as_of), dtype=np.int8), 1)
    signals = {name: data[f"signal_{name}"] for name in SIGNALS}
    return episode, signals, meta


def env_config(**changes):
    from rl.env import EnvConfig
    from rl.execution import ExecutionConfig

    return EnvConfig(initial_quote=INITIAL_QUOTE, trade_fraction=TRADE_FRACTION, max_position_fraction=1.0,
                     execution=ExecutionConfig(latency_blocks=1), **changes)


# --------------------------------------------------------------------------------- children (main venv)

def best_of(fn, repeats: int, budget_s: float = 20.0) -> tuple[float, int]:
    """Best wall time of `repeats` calls of fn(); stops early once a call took over budget_s."""
    best, runs = math.inf, 0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        runs += 1
        if best > budget_s:
            break
    return best, runs


def child_env_single(work: Path, steps: int, repeats: int) -> list[dict]:
    from rl.env import TradingEnv

    episode, _, _ = load(work)
    env = TradingEnv(episode, env_config())
    actions = np.random.default_rng(7).integers(0, 3, size=steps).tolist()

    def run():
        env.reset(seed=0)
        for a in actions:
            env.step(a)

    wall, runs = best_of(run, repeats)
    return [{"contender": "chainlake TradingEnv", "kind": "env", "books": 1, "calls": steps, "env_steps": steps,
             "wall_s": wall, "runs": runs, "obs_dim": env.observation_space.shape[0]}]


def child_env_vector(work: Path, steps: int, books: int, repeats: int) -> list[dict]:
    from rl.env import VectorTradingEnv

    episode, _, _ = load(work)
    env = VectorTradingEnv(episode, env_config(random_start=True, episode_length=EPISODE_LENGTH), num_envs=books)
    calls = max(1, math.ceil(steps / books))
    actions = np.random.default_rng(7).integers(0, 3, size=(calls, books))

    def run():
        env.reset(seed=0)
        for a in actions:
            env.step(a)

    wall, runs = best_of(run, repeats)
    return [{"contender": f"chainlake VectorTradingEnv N={books}", "kind": "env", "books": books, "calls": calls,
             "env_steps": calls * books, "wall_s": wall, "runs": runs,
             "obs_dim": env.single_observation_space.shape[0]}]


def child_fast(work: Path, repeats: int) -> list[dict]:
    t0 = time.perf_counter()
    from rl import fast_backtest as fb
    import_s = time.perf_counter() - t0
    episode, signals, _ = load(work)
    cfg = env_config()
    rows = []
    for k, name in enumerate(SIGNALS):
        first = None
        if k == 0:  # empty numba cache (NUMBA_CACHE_DIR from the driver): compiles here
            t = time.perf_counter()
            fb.simulate_signals(episode, signals[name], cfg)
            first = time.perf_counter() - t
        sim_s, runs = best_of(lambda: fb.simulate_signals(episode, signals[name], cfg), repeats)
        full_s, _ = best_of(lambda: fb.fast_backtest(episode, signals[name], cfg), repeats)
        run = fb.simulate_signals(episode, signals[name], cfg)
        result = fb.fast_backtest(episode, signals[name], cfg)
        rows.append({"contender": "chainlake simulate_signals", "kind": "backtest", "signal": name,
                     "bars": run.n_steps, "first_call_s": first, "import_s": import_s, "warm_s": sim_s,
                     "warm_full_s": full_s, "runs": runs, "fills": len(run.fill_step),
                     "final_value": float(run.equity[-1]), "final_gross": float(run.equity_gross[-1]),
                     "fees_paid": result.metrics["fees_paid"], "gas_paid": result.metrics["gas_paid"],
                     "slippage_paid": result.metrics["slippage_paid"], "trade_size": run.trade_size})
    return rows


def child_reference(work: Path, ref_rows: int) -> list[dict]:
    from rl.backtest import backtest
    from rl.baselines import Scripted
    from rl.fast_backtest import fast_backtest

    episode, signals, _ = load(work)
    cfg = env_config()
    rows = []
    for name in SIGNALS:
        sig = signals[name]
        t = time.perf_counter()
        ref = backtest(episode, Scripted(sig[:ref_rows].tolist()), cfg, 0, ref_rows, name=name)
        wall = time.perf_counter() - t
        fast = fast_backtest(episode, sig, cfg, 0, ref_rows, name=name)
        same = (all(np.array_equal(getattr(fast, k), getattr(ref, k))
                    for k in ("blocks", "equity", "equity_gross", "position", "actions"))
                and fast.ledger.equals(ref.ledger)
                and all(fast.metrics[k] == v or (v != v and fast.metrics[k] != fast.metrics[k])
                        for k, v in ref.metrics.items()))
        rows.append({"contender": "chainlake reference backtester", "kind": "backtest", "signal": name,
                     "bars": ref.n_steps, "warm_s": wall, "runs": 1, "fills": ref.ledger.height,
                     "final_value": float(ref.equity[-1]), "same_as_fast": bool(same)})
    return rows


# ------------------------------------------------------------------------------------------ driver

def peer_python() -> Path:
    """bench/.rl-venv with the peers pinned, created on first use (a stamp file per pin set)."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / (".installed-" + "-".join(p.replace("==", "") for p in PEER_PINS))
    if stamp.exists():
        return python
    uv = ROOT / ".venv" / "bin" / "uv"
    print(f"creating {PEER_VENV.relative_to(ROOT)} ({', '.join(PEER_PINS)}) ...", flush=True)
    if uv.exists():
        subprocess.run([str(uv), "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(PEER_VENV)],
                       check=True)
        subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(python), *PEER_PINS], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PINS], check=True)
    stamp.touch()
    return python


def spawn(cmd: list[str], label: str, cache_dir: Path) -> list[dict]:
    """Run one child with an empty numba cache; return its rows (its last stdout line, JSON) or an error row."""
    print(f"running {label} ...", flush=True)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        print(f"  {label} FAILED (exit {proc.returncode}):\n    " + "\n    ".join(tail), flush=True)
        return [{"contender": label, "error": tail[-1] if tail else f"exit {proc.returncode}"}]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    for row in rows:
        what = f"{row['env_steps'] / row['wall_s']:,.0f} env-steps/s" if row["kind"] == "env" else \
            f"{row['signal']}: {row['warm_s']:.3f} s"
        print(f"  {row['contender']}: {what}", flush=True)
    return rows


def run_all(args, work: Path, steps: int) -> list[dict]:
    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--repeats", str(args.repeats)]
    jobs: list[tuple[str, list[str], bool]] = [  # (name, command, needs the peer venv)
        ("gym-anytrading", ["--child", "gym-anytrading", "--env-steps", str(steps)], True),
        ("chainlake-env-single", me + ["--child", "env-single", "--env-steps", str(steps)], False),
        *((f"chainlake-env-vector-{n}", me + ["--child", "env-vector", "--env-steps", str(steps), "--books", str(n)],
           False) for n in args.books),
        ("chainlake-fast", me + ["--child", "fast"], False),
        ("chainlake-reference", me + ["--child", "reference", "--ref-rows", str(args.ref_rows)], False),
        ("vectorbt-numba", ["--child", "vectorbt-numba"], True),
        ("vectorbt-rust", ["--child", "vectorbt-rust"], True),
    ]
    wanted = [c for c in args.only.split(",") if c]
    results = []
    for name, cmd, peer in jobs:
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        if peer:
            cmd = [str(peer_python()), str(PEER_SCRIPT), "--work", str(work), "--repeats", str(args.repeats), *cmd]
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            results += spawn(cmd, name, Path(cache))
    return results


def ratio(x: float) -> str:
    """A speed ratio (peer time / ours: > 1 = chainlake faster)."""
    return f"{x:.2f}x" if x >= 0.1 else f"{x:.4f}x"


def fmt_s(x) -> str:
    return "–" if x is None else f"{x:.4f}" if x < 0.1 else f"{x:,.3f}" if x < 100 else f"{x:,.0f}"


def env_table(rows: list[dict]) -> str:
    rows = [r for r in rows if r.get("kind") == "env"]
    peer = next((r for r in rows if r["contender"] == "gym-anytrading"), None)
    base = peer["env_steps"] / peer["wall_s"] if peer else None
    out = ["| env | books N | step() calls | env-steps | wall s | step() calls/s | env-steps/s | vs gym-anytrading |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rate = r["env_steps"] / r["wall_s"]
        vs = ratio(rate / base) if base else "–"
        out.append(f"| {r['contender']} | {r['books']:,} | {r['calls']:,} | {r['env_steps']:,} | "
                   f"{fmt_s(r['wall_s'])} | {r['calls'] / r['wall_s']:,.0f} | {rate:,.0f} | {vs} |")
    return "\n".join(out)


def backtest_table(rows: list[dict], bars: int) -> str:
    rows = [r for r in rows if r.get("kind") == "backtest"]
    out = [f"| backtester | signal | what is timed | bars run | first call s | warm s | {bars:,}-bar s | M bars/s | "
           "fills | final value (USDC) | vs vectorbt (numba) | vs vectorbt (rust) |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref = {}
    for r in rows:
        if r["contender"].startswith("vectorbt"):
            ref[(r["contender"], r["signal"])] = r["warm_equity_s"]

    def line(r, what, warm, first=None, note=""):
        per_bar = warm / r["bars"]
        full = per_bar * bars  # the 1M-bar time (extrapolated for a slice)
        vs = []
        for engine in ("vectorbt-numba", "vectorbt-rust"):
            peer = ref.get((engine, r["signal"]))
            vs.append(ratio(peer / full) if peer else "–")
        full_text = fmt_s(full) if r["bars"] == bars else f"~{fmt_s(full)} (extrapolated)"
        return (f"| {r['contender']}{note} | {r['signal']} | {what} | {r['bars']:,} | {fmt_s(first)} | {fmt_s(warm)} | "
                f"{full_text} | {r['bars'] / warm / 1e6:,.2f} | {r['fills']:,} | {r['final_value']:,.2f} | {vs[0]} | "
                f"{vs[1]} |")

    for r in rows:
        c = r["contender"]
        if c == "chainlake simulate_signals":
            out.append(line(r, "compiled loop: equity net + gross, position, fills", r["warm_s"], r["first_call_s"]))
            out.append(line({**r, "contender": "chainlake fast_backtest"},
                            "+ polars ledger + 16 metrics (a full BacktestResult)", r["warm_full_s"]))
        elif c == "chainlake reference backtester":
            out.append(line(r, f"run_policies + Scripted (the env stepped per decision), first {r['bars']:,} rows "
                               "only", r["warm_s"], note=" (slice)"))
        else:
            out.append(line(r, "from_signals", r["warm_s"], r["first_call_s"]))
            out.append(line(r, "from_signals + value()", r["warm_equity_s"]))
    return "\n".join(out)


def goals(rows: list[dict]) -> str:
    ok = [r for r in rows if "error" not in r]
    env = {r["contender"]: r["env_steps"] / r["wall_s"] for r in ok if r.get("kind") == "env"}
    lines = []
    peer = env.get("gym-anytrading")
    if peer:
        vec = {k: v for k, v in env.items() if "VectorTradingEnv" in k}
        if vec:
            best = max(vec, key=vec.get)
            lines.append(f"Env: best chainlake rate {vec[best]:,.0f} env-steps/s ({best}) = {vec[best] / peer:.1f}x "
                         f"gym-anytrading's {peer:,.0f} steps/s (goal ≥ 20x: "
                         f"{'met' if vec[best] >= 20 * peer else 'NOT met'}).")
            for k in sorted(vec, key=lambda k: int(k.split("=")[1])):
                lines.append(f"  {k}: {vec[k] / peer:.2f}x")
        if "chainlake TradingEnv" in env:
            lines.append(f"Single TradingEnv: {env['chainlake TradingEnv'] / peer:.3f}x gym-anytrading "
                         "(one book per step() call).")
    bt = {(r["contender"], r["signal"]): r for r in ok if r.get("kind") == "backtest"}
    for signal in SIGNALS:
        fast = bt.get(("chainlake simulate_signals", signal))
        for engine in ("vectorbt-numba", "vectorbt-rust"):
            peer = bt.get((engine, signal))
            if fast and peer:
                speedup = peer["warm_equity_s"] / fast["warm_s"]
                lines.append(f"Backtest ({signal}): vectorbt {engine.split('-')[1]} from_signals + value() "
                             f"{peer['warm_equity_s']:.3f} s / chainlake simulate_signals {fast['warm_s']:.3f} s = "
                             f"{speedup:.1f}x (goal ≥ 1x: {'met' if speedup >= 1 else 'NOT met'}); "
                             f"fast_backtest with ledger and metrics {fast['warm_full_s']:.3f} s = "
                             f"{peer['warm_equity_s'] / fast['warm_full_s']:.1f}x.")
        ref = bt.get(("chainlake reference backtester", signal))
        if fast and ref:
            per_bar_ref, per_bar_fast = ref["warm_s"] / ref["bars"], fast["warm_full_s"] / fast["bars"]
            lines.append(f"Backtest ({signal}): fast_backtest is {per_bar_ref / per_bar_fast:,.0f}x faster per bar "
                         f"than the reference event-driven backtester ({per_bar_ref * 1e6:.0f} µs vs "
                         f"{per_bar_fast * 1e9:.0f} ns per bar, full BacktestResult both).")
    return "\n".join(f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}" for line in lines)


def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def machine(rows: list[dict]) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    text = (f"{os.cpu_count()} cores, {cpu}, {mem_kb / 1024 / 1024:.1f} GiB RAM, Python {platform.python_version()}; "
            "chainlake venv: " + ", ".join(f"{n} {version(n)}" for n in ("numpy", "numba", "gymnasium", "polars")))
    peer = {}
    for r in rows:
        peer.update(r.get("versions", {}))
    if peer:
        text += "; peer venv bench/.rl-venv: " + ", ".join(f"{k} {v}" for k, v in sorted(peer.items()))
    return text


def report(rows: list[dict], meta: dict, args, steps: int, load_avg: tuple) -> str:
    errors = [f"{r['contender']}: {r['error']}" for r in rows if "error" in r]
    same = [r for r in rows if "same_as_fast" in r]
    agree = ("**yes**" if same and all(r["same_as_fast"] for r in same) else "**NO**" if same else "not run")
    gat = next((r for r in rows if r.get("contender") == "gym-anytrading"), {})
    vbt_import = next((r["import_s"] for r in rows if r.get("contender") == "vectorbt-numba"), math.nan)
    parts = [
        "### Env steps/s (random actions, same mid series)",
        env_table(rows),
        "### Backtest of the same signals over the same bars (fees on)",
        backtest_table(rows, meta["bars"]),
        "### Goals",
        goals(rows),
        "### What each models",
        "\n".join(f"- **{k}**: {v}." for k, v in MODELS.items()),
        f"Data: synthetic WETH/USDC constant-product pool, {meta['bars']:,} decision rows (blocks "
        f"{FIRST_BLOCK:,}..{FIRST_BLOCK + meta['blocks'] - 1:,}, 12 s), GBM mid (60 %/year), depth ~15,000 WETH x "
        f"30M USDC, EIP-1559-like base fee around 20 gwei, pool fee {FEE:.1%}, seed {meta['seed']}. Backtests: "
        f"100,000 USDC to start, trade size {meta['trade_size']:.4f} WETH (25 % of the cash at the first mid), "
        f"chainlake caps the position at 100 % of the initial value and executes with 1-block latency, 120,000 "
        f"gas + 1 gwei tip, 5 % liquidity cap. vectorbt: `size_type=\"amount\", accumulate=True`, same fee, cash "
        f"and size (its cash cap plays the role of the position cap). Signals: momentum (64-block return beyond "
        f"±2σ), random (uniform 0/1/2).",
        f"Env runs: {steps:,} env-steps per contender (step() calls × books); chainlake TradingEnv from row 0; "
        f"VectorTradingEnv N books at random starts, {EPISODE_LENGTH:,}-step episodes with autoreset; observations "
        f"{len(FEATURES)} features + 2 book shares; gym-anytrading `StocksEnv(window_size=10)` (observation 10×2), "
        f"actions {{sell, buy}}, built directly (no `gym.make` wrappers). Timing: step loops only, best of "
        f"{args.repeats} (runs over 20 s: once).",
        f"The reference backtester and `fast_backtest` on the reference's slice give the same result to the last "
        f"bit (equity net and gross, position, actions, ledger, metrics): {agree}.",
        f"First call = the first call in a fresh process with an empty numba cache (compilation included); "
        f"import times excluded (vectorbt's import: {vbt_import:.2f} s). "
        f"gym-anytrading fees: {gat.get('fees', '?')}.",
        f"Machine: {machine(rows)}. Load average (1 min) {load_avg[0]:.2f} at the start, {load_avg[1]:.2f} at the end "
        f"(other work on the same 2 cores moves the numbers). Each contender in its own subprocess.",
    ]
    if errors:
        parts.append("**Failed:** " + "; ".join(errors))
    return "\n\n".join(parts) + "\n"


def write_results(text: str) -> None:
    """Rewrite this benchmark's section of bench/RESULTS.md (the analysis under it is kept)."""
    write_section("rl", text, "RL benchmark: chainlake's env and backtester vs gym-anytrading and vectorbt",
                  '`.venv/bin/python bench/rl.py` (peers in `bench/.rl-venv`, created on first use). The part between the markers below is rewritten by every run; the analysis under it is not.')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="decision rows of the synthetic market")
    parser.add_argument("--env-steps", type=int, default=1_000_000, help="env-steps per env contender")
    parser.add_argument("--books", default="1,64,1024,4096,16384", help="VectorTradingEnv sizes")
    parser.add_argument("--ref-rows", type=int, default=100_000, help="rows of the reference backtester's slice")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated contender name prefixes (default: all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k bars, 20k env-steps, 5k-row slice")
    parser.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.books = [int(b) for b in str(args.books).split(",") if b]
    if args.quick:
        args.bars, args.env_steps, args.ref_rows, args.repeats = 20_000, 20_000, 5_000, 1
        args.books = [1, 64, 1024]
        args.no_results = True
    return args


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        work = args.work
        rows = {"env-single": lambda: child_env_single(work, args.env_steps, args.repeats),
                "env-vector": lambda: child_env_vector(work, args.env_steps, args.books[0], args.repeats),
                "fast": lambda: child_fast(work, args.repeats),
                "reference": lambda: child_reference(work, args.ref_rows)}[args.child]()
        print(json.dumps(rows))
        return
    work = generate(args.bars, args.seed)
    meta = json.loads(str(np.load(work / "market.npz")["meta"]))
    steps = min(args.env_steps, args.bars - 64)  # gym-anytrading's episode is the series less its window
    load_before = os.getloadavg()[0]
    rows = run_all(args, work, steps)
    load_avg = (load_before, os.getloadavg()[0])
    text = report(rows, meta, args, steps, load_avg)
    print("\n" + text)
    failed = [r for r in rows if "error" in r] or [r for r in rows if r.get("same_as_fast") is False]
    if not args.no_results and not failed:
        write_results(text)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    if failed:
        print("FAILED: " + ", ".join(r["contender"] for r in failed), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
