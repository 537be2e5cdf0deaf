"""The peers of `bench/rl.py`, run in their own venv (`bench/.rl-venv`: gym-anytrading and vectorbt, which pull
pandas; chainlake's venv has no pandas). Reads the market that bench/rl.py wrote (`market.npz`: the close
series = the mid known at each decision, and the signals), times one peer, prints one JSON line.

    bench/.rl-venv/bin/python bench/rl_peers.py --child gym-anytrading --work DIR --env-steps S --repeats R
    bench/.rl-venv/bin/python bench/rl_peers.py --child vectorbt-numba --work DIR --repeats R   (or vectorbt-rust)

- gym-anytrading: `StocksEnv(df, window_size, frame_bound=(window_size, bars))` built directly (no
  `gym.make` wrappers, its fastest form), `reset(seed=0)`, then S `step(a)` calls with precomputed
  uniform actions in {0 sell, 1 buy}. Timed: the step loop.
- vectorbt: `Portfolio.from_signals(close, entries, exits, fees, init_cash, size, size_type="amount",
  accumulate=True, engine=...)` for each signal set (entries = buy signals, exits = sell signals), then
  `.value()` (the equity curve). "first call" is the first `from_signals` in a fresh process with an
  empty numba cache (NUMBA_CACHE_DIR is set by the driver), so it includes compilation; "warm" is the
  best of R later calls. Inputs are pandas Series built before timing.
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import metadata
from pathlib import Path

import numpy as np

WINDOW = 10


def versions(names) -> dict:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def gym_anytrading(data, steps: int, repeats: int) -> dict:
    t0 = time.perf_counter()
    import pandas as pd
    from gym_anytrading.envs import StocksEnv
    import_s = time.perf_counter() - t0
    close = data["close"]
    df = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close, "Volume": np.ones(len(close))})
    env = StocksEnv(df=df, window_size=WINDOW, frame_bound=(WINDOW, len(close)))
    actions = np.random.default_rng(7).integers(0, 2, size=steps).tolist()
    best, runs = float("inf"), 0
    for _ in range(repeats):
        env.reset(seed=0)
        t = time.perf_counter()
        for a in actions:
            env.step(a)
        best = min(best, time.perf_counter() - t)
        runs += 1
        if best > 20:
            break
    return {"contender": "gym-anytrading", "kind": "env", "books": 1, "calls": steps, "env_steps": steps,
            "wall_s": best, "runs": runs, "import_s": import_s, "obs_dim": int(np.prod(env.observation_space.shape)),
            "fees": {"bid": env.trade_fee_bid_percent, "ask": env.trade_fee_ask_percent},
            "versions": versions(["gym-anytrading", "gymnasium", "pandas", "numpy"])}


def vectorbt(data, engine: str, repeats: int) -> list[dict]:
    t0 = time.perf_counter()
    import pandas as pd
    import vectorbt as vbt
    import_s = time.perf_counter() - t0
    meta = json.loads(str(data["meta"]))
    close = pd.Series(data["close"])
    rows = []
    for k, signal in enumerate(meta["signals"]):
        sig = data[f"signal_{signal}"]
        entries, exits = pd.Series(sig == 2), pd.Series(sig == 0)

        def run():
            return vbt.Portfolio.from_signals(close, entries, exits, fees=meta["fee"], init_cash=meta["initial_quote"],
                                              size=meta["trade_size"], size_type="amount", accumulate=True,
                                              engine=engine)

        first = None
        if k == 0:
            t = time.perf_counter()
            run().value()
            first = time.perf_counter() - t
        best_sim = best_value = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            pf = run()
            t1 = time.perf_counter()
            value = pf.value().to_numpy()
            t2 = time.perf_counter()
            best_sim, best_value = min(best_sim, t1 - t), min(best_value, t2 - t)
        rows.append({"contender": f"vectorbt-{engine}", "kind": "backtest", "signal": signal, "bars": len(close),
                     "first_call_s": first, "import_s": import_s, "warm_s": best_sim, "warm_equity_s": best_value,
                     "runs": repeats, "fills": int(pf.orders.count()), "final_value": float(value[-1]),
                     "engine": engine,
                     "versions": versions(["vectorbt", "vectorbt-rust", "numba", "pandas", "numpy"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", required=True, choices=["gym-anytrading", "vectorbt-numba", "vectorbt-rust"])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--env-steps", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = np.load(args.work / "market.npz")
    if args.child == "gym-anytrading":
        print(json.dumps([gym_anytrading(data, args.env_steps, args.repeats)]))
    else:
        print(json.dumps(vectorbt(data, args.child.split("-", 1)[1], args.repeats)))


if __name__ == "__main__":
    main()
