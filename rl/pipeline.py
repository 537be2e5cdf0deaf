"""Train, store and evaluate the agent: the library behind the `policy_*` / `backtest_report` assets and
`chainlake train` / `chainlake backtest`.

- `train`: one episode (a pool's decision blocks with point-in-time features), a time split
  train / validation / test with an embargo of at least the label horizon, every learner of
  `rl.tabular.train_policies` on the train rows, each policy saved as a new version under
  `warehouse/models/policy_<name>/` with the pool, block ranges, features and settings it was trained on.
- `evaluate`: the stored policies and the baselines (buy-and-hold, always-hold, random, momentum) on
  the holdout test rows, which the policies never saw; then walk-forward folds and the bull->bear /
  bear->bull folds, where every learner is retrained on the fold's own train rows before its test
  rows. One row per (policy, fold) with every metric: the `backtest_results` table.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from chainlake.errors import ConfigError
from chainlake.features.inputs import scan_lake_table
from chainlake.ingest.lake import write_parquet_atomic
from rl.backtest import compare, run_policies
from rl.baselines import baselines
from rl.data import DEFAULT_FEATURES, Episode, load_episode
from rl.env import EnvConfig
from rl.execution import ExecutionConfig
from rl.market import quote_rank
from rl.policy_store import DEFAULT_MODELS, StoredPolicy, load_policy, save_policy
from rl.report import equity_png
from rl.splits import Split, embargo_rows, regime_transition_folds, time_splits, walk_forward
from rl.tabular import LearnConfig, policy_from_artifact, train_policies

POLICIES = ("supervised", "linear", "tabular", "q_learning", "sarsa")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentConfig:
    """Everything that defines a training run (recorded in each policy's meta)."""

    pool: str | None = None  # None: the most liquid pool quoted in a stablecoin (see `default_pool`)
    features: tuple[str, ...] = DEFAULT_FEATURES
    stride: int = 1
    latency_blocks: int = 1
    capital_share: float = 0.002  # initial capital = this share of the pool's quote reserve at the start
    trade_fraction: float = 0.25
    max_position_fraction: float = 0.5
    train: float = 0.6
    validation: float = 0.2
    walk_forward_folds: int = 3
    regime_test_rows: int = 300
    learn: LearnConfig = field(default_factory=LearnConfig)

    def __post_init__(self):
        if self.latency_blocks < 1 and any(f.startswith("mempool_") for f in self.features):
            # the mempool seen at b is mostly what block b includes: latency 0 would front-run it for free
            raise ConfigError("latency 0 with mempool features trades ahead of the pending flow it sees: "
                              "use latency >= 1 or drop the mempool_* features")

    def embargo(self) -> int:
        return embargo_rows(self.learn.horizon_blocks, self.stride, self.latency_blocks)

    def env_config(self, episode: Episode) -> EnvConfig:
        start = episode.market.index(int(episode.as_of[0])) - 1
        capital = float(self.capital_share * episode.market.reserve_quote[max(start, 0)])
        return EnvConfig(initial_quote=capital, trade_fraction=self.trade_fraction,
                         max_position_fraction=self.max_position_fraction,
                         execution=ExecutionConfig(latency_blocks=self.latency_blocks))

    def to_meta(self) -> dict:
        meta = asdict(self)
        meta["features"] = list(self.features)
        return meta


def default_pool(lake_dir: str | Path) -> str:
    """The pool with the most swaps among those with the best quote token (stablecoin > WETH > other)."""
    pools = scan_lake_table(lake_dir, "pools").collect()
    tokens = scan_lake_table(lake_dir, "tokens").collect()
    swaps = (scan_lake_table(lake_dir, "dex_swaps").group_by("pool").agg(pl.len().alias("swaps")).collect())
    if pools.height == 0:
        raise ConfigError(f"no pools in {lake_dir}: ingest and decode first")
    symbol = dict(zip(tokens.get_column("token").to_list(), tokens.get_column("symbol").to_list()))
    count = dict(zip(swaps.get_column("pool").to_list(), swaps.get_column("swaps").to_list()))
    ranked = sorted(pools.iter_rows(named=True), key=lambda r: (
        max(quote_rank(symbol.get(r["token0"])), quote_rank(symbol.get(r["token1"]))),
        min(quote_rank(symbol.get(r["token0"])), quote_rank(symbol.get(r["token1"]))) < 2,  # not stable/stable
        count.get(r["pool"], 0)), reverse=True)
    return ranked[0]["pool"]


def agent_episode(lake_dir: str | Path, config: AgentConfig, frame: pl.DataFrame | None = None) -> Episode:
    pool = (config.pool or default_pool(lake_dir)).lower()
    return load_episode(lake_dir, pool, config.features, stride=config.stride, latency_blocks=config.latency_blocks,
                        frame=frame)


def holdout_split(n: int, config: AgentConfig) -> Split:
    return time_splits(n, config.train, config.validation, embargo=config.embargo())


def blocks_of(episode: Episode, rows: range) -> list[int] | None:
    return [int(episode.as_of[rows.start]), int(episode.as_of[rows.stop - 1])] if len(rows) else None


@dataclass(frozen=True)
class TrainResult:
    episode: Episode
    split: Split
    stored: dict[str, StoredPolicy]
    report: dict


def train(lake_dir: str | Path, config: AgentConfig | None = None, models_dir: str | Path = DEFAULT_MODELS,
          frame: pl.DataFrame | None = None) -> TrainResult:
    """Train every learner on the holdout split's train rows and store each policy as a new version."""
    config = config or AgentConfig()
    episode = agent_episode(lake_dir, config, frame)
    split = holdout_split(len(episode), config)
    env_config = config.env_config(episode)
    policies, report = train_policies(episode, split, env_config, config.learn)
    ranges = {part: blocks_of(episode, rows) for part, rows in split.parts().items()}
    stored = {}
    for name, policy in policies.items():
        meta, arrays = policy.to_artifact()
        meta = {"policy": meta, "pool": episode.market.pool, "base": episode.market.base_symbol,
                "quote": episode.market.quote_symbol, "features": list(episode.feature_names),
                "trained_blocks": ranges["train"], "validation_blocks": ranges["validation"],
                "test_blocks": ranges["test"], "episode_blocks": [int(episode.as_of[0]), int(episode.as_of[-1])],
                "agent": config.to_meta(), "env": _env_meta(env_config), "report": _jsonable(report.get(name, {}))}
        stored[name] = save_policy(f"policy_{name}", meta, arrays, models_dir)
    return TrainResult(episode, split, stored, report)


def _env_meta(env_config: EnvConfig) -> dict:
    return {**{k: v for k, v in asdict(env_config).items() if k != "execution"},
            "execution": asdict(env_config.execution)}


def _jsonable(value):
    """Reports carry numpy scalars and arrays; meta.json wants plain values (long histories trimmed)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value][:200]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_policies(models_dir: str | Path = DEFAULT_MODELS, names=POLICIES) -> dict[str, tuple[object, StoredPolicy]]:
    out = {}
    for name in names:
        stored = load_policy(f"policy_{name}", models_dir=models_dir)
        out[name] = (policy_from_artifact(stored.meta["policy"], stored.arrays), stored)
    return out


@dataclass(frozen=True)
class Evaluation:
    results: pl.DataFrame  # backtest_results: one row per (policy, fold)
    holdout: dict  # {policy name: BacktestResult} on the holdout test rows (for the equity chart)
    versions: dict[str, str]


def evaluate(lake_dir: str | Path, config: AgentConfig | None = None, models_dir: str | Path = DEFAULT_MODELS,
             frame: pl.DataFrame | None = None, folds: bool = True) -> Evaluation:
    """Stored policies + baselines on the holdout test rows, then (with `folds`) retrained walk-forward
    and regime-transition folds. Refuses policies trained on another pool or on the test rows."""
    config = config or AgentConfig()
    episode = agent_episode(lake_dir, config, frame)
    split = holdout_split(len(episode), config)
    env_config = config.env_config(episode)
    stored = load_policies(models_dir)
    test_first = int(episode.as_of[split.test.start])
    for name, (_, meta) in stored.items():
        if meta.meta["pool"] != episode.market.pool or meta.meta["features"] != list(episode.feature_names):
            raise ConfigError(f"policy_{name} {meta.version} was trained on pool {meta.meta['pool']} with other "
                              "features: run `chainlake train` with the same settings first")
        if meta.meta["trained_blocks"][1] >= test_first:
            raise ConfigError(f"policy_{name} {meta.version} was trained on blocks up to "
                              f"{meta.meta['trained_blocks'][1]}, inside the test window from {test_first}: retrain")
    policies = {**{n: p for n, (p, _) in stored.items()}, **baselines(seed=config.learn.seed)}
    holdout = run_policies(episode, policies, env_config, split.test.start, split.test.stop)
    tables = [tag(compare(episode, policies, env_config, {"holdout": split.test}), "holdout")]
    if folds:
        tables += fold_results(episode, config, env_config)
    return Evaluation(pl.concat(tables, how="vertical"), holdout, {n: m.version for n, (_, m) in stored.items()})


def tag(table: pl.DataFrame, kind: str) -> pl.DataFrame:
    return table.with_columns(pl.lit(kind).alias("fold_kind"))


def fold_results(episode: Episode, config: AgentConfig, env_config: EnvConfig) -> list[pl.DataFrame]:
    """Walk-forward and regime-transition folds, every learner retrained on each fold's train rows."""
    n, embargo = len(episode), config.embargo()
    test_size = n // (config.walk_forward_folds + 3)
    try:
        folds: list[tuple[str, str, Split]] = [
            (f"walk_forward_{i}", "walk_forward", s) for i, s in
            enumerate(walk_forward(n, config.walk_forward_folds, None, test_size, embargo,
                                   validation_size=test_size // 2))]
    except ConfigError as exc:  # a short lake: the holdout still runs, the table simply has no such rows
        log.warning("no walk-forward folds: %s", exc)
        folds = []
    for fold in regime_transition_folds(episode.regime, min(config.regime_test_rows, n // 4), embargo,
                                        validation_size=min(config.regime_test_rows, n // 4) // 2,
                                        min_train=n // 5):
        folds.append((fold.kind, fold.kind, fold.split))
    tables = []
    for name, kind, split in folds:
        try:
            learned, _ = train_policies(episode, split, env_config, config.learn)
        except ConfigError as exc:  # a fold too short to learn from is left out, not fatal
            log.warning("fold %s skipped: %s", name, exc)
            continue
        policies = {**learned, **baselines(seed=config.learn.seed)}
        tables.append(tag(compare(episode, policies, env_config, {name: split.test}), kind))
    return tables


BACKTEST_RESULTS = "backtest_results"


def write_results(lake_dir: str | Path, evaluation: Evaluation, models_dir: str | Path = DEFAULT_MODELS) -> tuple[Path, Path]:
    """`LAKE/backtest_results/data.parquet` (a catalog view) and the holdout equity/drawdown chart as PNG
    (`MODELS/reports/backtest_equity.png`), both replaced atomically."""
    from datetime import datetime, timezone

    table = evaluation.results.with_columns(
        pl.col("policy").replace_strict(evaluation.versions, default=None).alias("policy_version"),
        pl.lit(datetime.now(timezone.utc)).alias("evaluated_at"))
    path = Path(lake_dir) / BACKTEST_RESULTS / "data.parquet"
    write_parquet_atomic(path, table.to_arrow())
    png = Path(models_dir) / "reports" / "backtest_equity.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".png.tmp")
    tmp.write_bytes(equity_png(evaluation.holdout, title="holdout test: equity (net of fees and gas) and drawdown"))
    tmp.replace(png)
    return path, png


SUMMARY_COLUMNS = ("policy", "total_return", "sharpe", "max_drawdown", "n_trades", "fees_paid", "gas_paid",
                   "slippage_paid", "pnl_net", "pnl_gross")


def summary(results: pl.DataFrame) -> pl.DataFrame:
    """The out-of-sample comparison: holdout metrics per policy, plus the mean total return over the
    walk-forward folds and the return in each regime-transition fold."""
    holdout = results.filter(pl.col("fold_kind") == "holdout").select(SUMMARY_COLUMNS)
    per_kind = (results.filter(pl.col("fold_kind") != "holdout").group_by("policy", "fold_kind")
                .agg(pl.col("total_return").mean()).pivot(on="fold_kind", index="policy", values="total_return"))
    if per_kind.height:
        per_kind = per_kind.rename({c: f"{c}_return" for c in per_kind.columns if c != "policy"})
        holdout = holdout.join(per_kind, on="policy", how="left", maintain_order="left")
    return holdout
