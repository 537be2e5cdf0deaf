"""Event-driven backtests at block granularity, through the very environment the agent trains in.

`run_policies` puts one book per policy in a `VectorTradingEnv` (no autoreset, no random start, the same
start and stop rows for all) and steps it decision by decision: the execution model, the timing
(decide at b_t knowing blocks < b_t, land at b_t + latency), the costs and the marks are those of
training. `backtest` is the one-policy case; `compare` runs a set of policies over a set of splits and
returns one row per (policy, split) with every metric of `rl.metrics`.

Policy protocol (baselines in `rl.baselines`; the learned policies implement the same):

    act(obs: np.ndarray[N, D] float32) -> actions        # required
    begin(env: VectorTradingEnv) -> None                 # optional, called before every run

- `obs` is a batch of observations, one row per book, laid out as `env.obs_names`: the episode's
  features (NaN -> 0), then position_share, cash_share (and order_share in "limit" mode). The
  backtester calls `act` once per decision with N = 1 (one book per policy).
- `actions` is int [N] in {0 sell, 1 hold, 2 buy} in "discrete" mode, float [N, 1] (fraction of value,
  -1..1) in "fraction" mode, float [N, 2] (size, price offset) in "limit" mode (see `rl.env`).
- `begin(env)` lets a policy bind columns by name (`env.obs_names`, `env.feature_names`), read the action
  mode and sizes (`env.config`), and reset its state or random generator so every run is reproducible.
  A plain callable `f(obs) -> actions` works as a policy too.

Results: `BacktestResult` has the equity curves (net and gross of fees and gas) per decision block, the
position, the actions, the trade ledger (a polars DataFrame, one row per fill) and the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from chainlake.errors import ConfigError
from rl.data import Episode
from rl.env import EnvConfig, VectorTradingEnv
from rl.metrics import METRIC_NAMES, compute_metrics, periods_per_year

LEDGER_SCHEMA = {"decision_block": pl.Int64, "block": pl.Int64, "side": pl.String, "base_delta": pl.Float64,
                 "quote_delta": pl.Float64, "exec_price": pl.Float64, "mid": pl.Float64, "fee": pl.Float64,
                 "gas": pl.Float64, "slippage": pl.Float64}


@dataclass
class BacktestResult:
    """One policy's run. Arrays of length n + 1 are per decision: blocks[t] is decision block b_t (the last
    entry, b_{n-1} + stride, is where the final mark is known); equity[t] is the value marked at the end
    of block blocks[t] - 1, before the decision at blocks[t] acts."""

    name: str
    pool: str
    start_row: int
    stop_row: int
    blocks: np.ndarray
    equity: np.ndarray
    equity_gross: np.ndarray
    position: np.ndarray
    actions: np.ndarray  # [n] or [n, A]
    ledger: pl.DataFrame  # decision_block, block (landing), side, base_delta, quote_delta (gas incl.),
    # exec_price (quote per base, fee incl., gas excl.), mid (the mid it executed against), fee, gas, slippage
    metrics: dict
    config: EnvConfig

    @property
    def n_steps(self) -> int:
        return len(self.equity) - 1


def _policy_act(policy):
    return policy.act if hasattr(policy, "act") else policy


def _normalize(actions, mode: str) -> np.ndarray:
    a = np.asarray(actions)
    if mode == "discrete":
        return a.reshape(1).astype(np.int64)
    return a.reshape(1, 1 if mode == "fraction" else 2).astype(np.float32)


def run_policies(episode: Episode, policies: Mapping[str, object], env_config: EnvConfig | None = None,
                 start: int | None = None, stop: int | None = None, block_seconds: float = 12.0) -> dict[str, BacktestResult]:
    """Backtest every policy over decision rows start..stop-1 (default: all usable rows), side by side."""
    if not policies:
        raise ConfigError("no policies to backtest")
    cfg = replace(env_config or EnvConfig(), random_start=False, episode_length=None)
    names = list(policies)
    n = len(names)
    env = VectorTradingEnv(episode, cfg, num_envs=n, autoreset=False)
    obs, info = env.reset(options={"start": 0 if start is None else start, "stop": stop})
    start_row = 0 if start is None else int(start)
    mid0 = env.mid.copy()
    for name in names:
        if hasattr(policies[name], "begin"):
            policies[name].begin(env)
    acts = [_policy_act(policies[name]) for name in names]
    values, grosses, positions, actions_log, steps = [info["value"]], [info["value_gross"]], [info["position"]], [], []
    blocks = [info["decision_block"]]
    while not env.done.all():
        actions = np.concatenate([_normalize(act(obs[i:i + 1]), cfg.action_mode) for i, act in enumerate(acts)])
        obs, _, _, _, info = env.step(actions)
        values.append(info["value"])
        grosses.append(info["value_gross"])
        positions.append(info["position"])
        blocks.append(info["mark_block"] + 1)
        actions_log.append(actions)
        steps.append(info)
    stacked = {key: np.stack([s[key] for s in steps]) for key in
               ("stepped", "traded", "decision_block", "exec_block", "base_delta", "quote_delta", "exec_mid", "fee",
                "gas", "slippage")}
    values, grosses, positions, blocks = map(np.stack, (values, grosses, positions, blocks))
    actions_log = np.stack(actions_log)
    per_year = periods_per_year(episode.stride, block_seconds)
    results = {}
    for i, name in enumerate(names):
        keep = np.concatenate([[True], stacked["stepped"][:, i]])
        traded = stacked["traded"][:, i] & stacked["stepped"][:, i]
        ledger = _ledger({key: col[:, i][traded] for key, col in stacked.items()})
        result = BacktestResult(
            name=name, pool=episode.market.pool, start_row=start_row, stop_row=start_row + int(keep.sum()) - 1,
            blocks=blocks[keep, i], equity=values[keep, i], equity_gross=grosses[keep, i],
            position=positions[keep, i], actions=actions_log[stacked["stepped"][:, i], i], ledger=ledger,
            metrics={}, config=cfg)
        result.metrics = compute_metrics(result.equity, result.equity_gross, ledger, per_year=per_year,
                                         initial_base=cfg.initial_base, initial_price=float(mid0[i]))
        results[name] = result
    return results


def _ledger(cols: dict[str, np.ndarray]) -> pl.DataFrame:
    base = cols["base_delta"]
    with np.errstate(divide="ignore", invalid="ignore"):
        price = -(cols["quote_delta"] + cols["gas"]) / base
    return pl.DataFrame({
        "decision_block": cols["decision_block"].astype(np.int64), "block": cols["exec_block"].astype(np.int64),
        "side": np.where(base > 0, "buy", "sell").astype(str), "base_delta": base,
        "quote_delta": cols["quote_delta"], "exec_price": price, "mid": cols["exec_mid"], "fee": cols["fee"],
        "gas": cols["gas"], "slippage": cols["slippage"]}, schema=LEDGER_SCHEMA)


def backtest(episode: Episode, policy, env_config: EnvConfig | None = None, start: int | None = None,
             stop: int | None = None, name: str = "policy", block_seconds: float = 12.0) -> BacktestResult:
    """One policy over decision rows start..stop-1 (see `run_policies`)."""
    return run_policies(episode, {name: policy}, env_config, start, stop, block_seconds)[name]


def _split_windows(splits, part: str) -> dict[str, range]:
    """{name: row range} from None, a mapping or a sequence of ranges, (start, stop) pairs, `rl.splits.Split`
    (its `part`) or `rl.splits.RegimeFold` (its split's `part`)."""
    def window(value) -> range:
        split = getattr(value, "split", value)  # RegimeFold -> Split
        if hasattr(split, "parts"):
            return split.parts()[part]
        if isinstance(value, range):
            return value
        lo, hi = value
        return range(int(lo), int(hi))

    if isinstance(splits, Mapping):
        return {str(k): window(v) for k, v in splits.items()}
    out = {}
    for k, value in enumerate(splits):
        kind = getattr(value, "kind", None)
        prefix = kind if kind else "fold" if hasattr(value, "parts") else "split"
        out[f"{prefix}_{k}"] = window(value)
    return out


def run_splits(episode: Episode, policies: Mapping[str, object], env_config: EnvConfig | None = None,
               splits=None, part: str = "test", block_seconds: float = 12.0) -> dict[tuple[str, str], BacktestResult]:
    """{(split name, policy name): result} over each split's `part` rows (None: one split "all")."""
    windows = {"all": range(len(episode))} if splits is None else _split_windows(splits, part)
    out = {}
    for split_name, rows in windows.items():
        if len(rows) == 0:
            raise ConfigError(f"split {split_name}: the {part} part is empty")
        for name, result in run_policies(episode, policies, env_config, rows.start, rows.stop, block_seconds).items():
            out[(split_name, name)] = result
    return out


def results_table(results: Mapping[tuple[str, str], BacktestResult], part: str = "test") -> pl.DataFrame:
    """One row per (policy, split): identification, the run's window and every metric."""
    rows = []
    for (split_name, name), r in results.items():
        cfg = r.config
        rows.append({"policy": name, "split": split_name, "part": part, "pool": r.pool,
                     "action_mode": cfg.action_mode, "latency_blocks": cfg.execution.latency_blocks,
                     "start_row": r.start_row, "stop_row": r.stop_row, "first_block": int(r.blocks[0]),
                     "last_block": int(r.blocks[-1]), "n_steps": r.n_steps, "initial_value": float(r.equity[0]),
                     **{k: r.metrics[k] for k in METRIC_NAMES}})
    schema = {"policy": pl.String, "split": pl.String, "part": pl.String, "pool": pl.String, "action_mode": pl.String,
              "latency_blocks": pl.Int64, "start_row": pl.Int64, "stop_row": pl.Int64, "first_block": pl.Int64,
              "last_block": pl.Int64, "n_steps": pl.Int64, "initial_value": pl.Float64,
              **{k: (pl.Int64 if k == "n_trades" else pl.Float64) for k in METRIC_NAMES}}
    return pl.DataFrame(rows, schema=schema)


def compare(episode: Episode, policies: Mapping[str, object], env_config: EnvConfig | None = None, splits=None,
            part: str = "test", block_seconds: float = 12.0) -> pl.DataFrame:
    """The results table (`results_table`) of every policy on every split's `part`: the `backtest_results` rows."""
    return results_table(run_splits(episode, policies, env_config, splits, part, block_seconds), part)


def equity_frame(results: Mapping[str, BacktestResult] | Sequence[BacktestResult]) -> pl.DataFrame:
    """Long table of the equity curves: policy, block, equity, equity_gross, position."""
    items = results.values() if isinstance(results, Mapping) else results
    frames = [pl.DataFrame({"policy": [r.name] * len(r.blocks), "block": r.blocks.astype(np.int64),
                            "equity": r.equity, "equity_gross": r.equity_gross, "position": r.position})
              for r in items]
    return pl.concat(frames) if frames else pl.DataFrame()


__all__ = ["LEDGER_SCHEMA", "BacktestResult", "backtest", "compare", "equity_frame", "results_table", "run_policies",
           "run_splits"]
