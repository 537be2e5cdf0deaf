"""A stored policy put to work on new blocks: what paper trading (`rl.paper`) and live trading (`rl.live`) share.

`PolicyRunner` loads a policy version from `warehouse/models/`, with the settings it was trained under (pool,
features, stride, latency, sizing), and answers the three questions a trading loop asks at each new head:

- which block is the next decision for (`decision_block`): a decision at block b knows blocks < b, so once
  block h is in the lake the agent can decide for h + 1, on the training stride grid;
- what the agent knows there (`features_at`): the same point-in-time features the backtester used, read
  from the feature store's state tables with `training_frame`, oriented to the pool's base like training;
- what it does (`act`): the policy on the env's observation (features, then the book as shares of its value).

Besides the stored learners, the baselines of `rl.baselines` (momentum, random, buy_and_hold, always_hold)
can trade too, as controls: with the settings of the newest stored `supervised` policy (same pool, features,
sizing), version `baseline@<that version>`. A random baseline restarts its generator in each session.

`order_sizes` and `order_quantity` resolve sizes exactly as the env does (`rl.env`): a discrete buy or sell
trades `trade_size` base, fixed at the start from `trade_fraction` of the book's value; buys stop at
`max_position`, sells at the base held (no shorting).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl

from chainlake.errors import ConfigError
from chainlake.features import load_registry, training_frame
from chainlake.features.inputs import scan_lake_table
from rl.baselines import baselines
from rl.data import REGIME, Episode, column_name, episode_from_frame, stale_views
from rl.env import BUY, HOLD, SELL, observation_names
from rl.market import PoolMarket, load_pool_market
from rl.pipeline import AgentConfig
from rl.policy_store import DEFAULT_MODELS, load_policy
from rl.tabular import LearnConfig, policy_from_artifact

BASELINES = ("momentum", "random", "buy_and_hold", "always_hold")
SETTINGS_FROM = "supervised"  # the learner every training run stores: baselines borrow its settings


def agent_config(meta: dict) -> AgentConfig:
    """The `AgentConfig` a policy was trained with, from its meta.json."""
    agent = dict(meta["agent"])
    known = {f.name for f in fields(AgentConfig)}
    learn = {k: tuple(v) if isinstance(v, list) else v for k, v in agent.pop("learn", {}).items()}
    values = {k: v for k, v in agent.items() if k in known}
    values["features"] = tuple(values.get("features", ()))
    return AgentConfig(**values, learn=LearnConfig(**learn))


def policy_name(name: str) -> str:
    """`supervised` or `policy_supervised` -> the store's name `policy_supervised`."""
    return name if name.startswith("policy_") else f"policy_{name}"


@dataclass(frozen=True)
class Decision:
    """What the agent chose for `block` (knowing blocks < block)."""

    block: int
    action: int  # rl.env: 0 sell, 1 hold, 2 buy
    features: np.ndarray
    obs: np.ndarray


class PolicyRunner:
    """A stored policy and its training settings, answering a trading loop (see the module docstring)."""

    def __init__(self, lake_dir: str | Path, policy: str, *, version: str | None = None,
                 models_dir: str | Path = DEFAULT_MODELS):
        self.lake_dir = Path(lake_dir)
        if policy in BASELINES:
            # a baseline trades with the settings of the newest trained policy (pool, features, sizing)
            self.stored = load_policy(policy_name(SETTINGS_FROM), version, models_dir)
            self.name, self.version = policy, f"baseline@{self.stored.version}"
        else:
            self.stored = load_policy(policy_name(policy), version, models_dir)
            self.name, self.version = self.stored.name.removeprefix("policy_"), self.stored.version
        meta = self.stored.meta
        self.config = agent_config(meta)
        self.policy = (baseline(policy, tuple(meta["features"]), self.config) if policy in BASELINES
                       else policy_from_artifact(meta["policy"], self.stored.arrays))
        self.pool = str(meta["pool"]).lower()
        self.stride, self.latency_blocks = self.config.stride, self.config.latency_blocks
        self.refs = tuple(self.config.features)
        self.feature_names = tuple(meta["features"])
        if tuple(column_name(r) for r in self.refs) != self.feature_names:
            raise ConfigError(f"{self.stored.name} {self.version}: its features and settings disagree; retrain it")
        self.registry = load_registry()
        market = self.market(None, None)
        self.base_token, self.quote_token = market.base_token, market.quote_token
        self.base_symbol, self.quote_symbol = market.base_symbol, market.quote_symbol
        self.base_is_token0 = market.base_is_token0
        decimals = token_decimals(self.lake_dir)
        self.base_decimals = decimals.get(self.base_token)
        self.quote_decimals = decimals.get(self.quote_token)

    def restart(self) -> None:
        """A new session: a baseline starts over (the random one's generator from its seed), as the backtester
        restarts it at every run; learned policies hold no state."""
        if self.name in BASELINES:
            self.policy = baseline(self.name, self.feature_names, self.config)

    def __repr__(self) -> str:
        return f"PolicyRunner({self.name} {self.version}, pool {self.pool})"

    def market(self, first_block: int | None, last_block: int | None) -> PoolMarket:
        return load_pool_market(self.lake_dir, self.pool, first_block, last_block)

    def decision_block(self, head: int) -> int | None:
        """The block a lake whose newest block is `head` can decide for: head + 1 if it is on the stride grid
        (the grid of the training frame: multiples of the stride), else None (wait for more blocks)."""
        block = head + 1
        return block if block % self.stride == 0 else None

    def frame_at(self, block: int) -> pl.DataFrame:
        """One training-frame row: the features known at `block` (events <= block - 1) and the regime."""
        refs = list(dict.fromkeys([*self.refs, "market_regime:regime_code"]))
        for view, last in stale_views(self.lake_dir, self.refs, block - 1, self.registry):
            raise ConfigError(f"feature view {view.name!r} is built through block {last}; a decision at block "
                              f"{block} needs block {block - 1}: build the features first")
        entities = pl.DataFrame({"pool": [self.pool], "block_number": [block]})
        return training_frame(entities, refs, lake_dir=self.lake_dir, registry=self.registry,
                              full_feature_names=True)

    def episode_at(self, block: int, market: PoolMarket) -> Episode:
        """A one-decision episode at `block` over `market`, built exactly as training builds its rows."""
        return episode_from_frame(self.frame_at(block), market, self.feature_names, self.stride)

    def features_at(self, block: int) -> np.ndarray:
        """The features known at `block`, float64, oriented to the pool's base (NaN: unknown)."""
        market = self.market(block - 1, block - 1)
        return self.episode_at(block, market).features[0]

    def act(self, features: np.ndarray, position_share: float, cash_share: float) -> int:
        """The policy's action on the env's observation: features (NaN -> 0) then the book shares, float32."""
        obs = observation(features, position_share, cash_share)
        return self.act_obs(obs)

    def act_obs(self, obs: np.ndarray) -> int:
        act = self.policy.act if hasattr(self.policy, "act") else self.policy
        action = int(np.asarray(act(obs[None, :])).reshape(-1)[0])
        if action not in (SELL, HOLD, BUY):
            raise ConfigError(f"{self.stored.name} {self.version} returned action {action}, not 0/1/2")
        return action

    def mid_at(self, block: int) -> float:
        """Quote per base at the end of `block`, from the lake."""
        return float(self.market(block, block).mid[0])


def baseline(name: str, feature_names: tuple[str, ...], config: AgentConfig):
    """A baseline of `rl.baselines` ready to act on the env's discrete observations (what `begin(env)` would
    tell it: the action mode and the observation's column names)."""
    policy = baselines(seed=config.learn.seed)[name]
    policy.begin(SimpleNamespace(config=SimpleNamespace(action_mode="discrete", trade_fraction=config.trade_fraction),
                                 obs_names=observation_names(feature_names)))
    return policy


def observation(features: np.ndarray, position_share: float, cash_share: float) -> np.ndarray:
    """The env's observation vector (`rl.env`): float32 features with NaN as 0, then the two book shares."""
    feats = np.asarray(features, dtype=np.float32)
    feats = np.where(np.isfinite(feats), feats, np.float32(0.0))
    return np.concatenate([feats, np.array([position_share, cash_share], dtype=np.float64)], dtype=np.float32)


def order_sizes(config: AgentConfig, value_quote: float, mid: float) -> tuple[float, float]:
    """(trade_size, max_position) in base units for a book worth `value_quote` at `mid`, as the env resolves
    them at reset from the trained settings."""
    if not (mid > 0 and value_quote > 0):
        raise ConfigError(f"cannot size orders for a book worth {value_quote} at mid {mid}")
    return config.trade_fraction * value_quote / mid, config.max_position_fraction * value_quote / mid


def order_quantity(action: int, base: float, trade_size: float, max_position: float) -> float:
    """Signed base quantity of a discrete action after the env's position limits (buy up to max_position,
    sell down to zero)."""
    if action == BUY:
        return min(trade_size, max(max_position - base, 0.0))
    if action == SELL:
        return -min(trade_size, max(base, 0.0))
    return 0.0


def token_decimals(lake_dir: str | Path) -> dict[str, int | None]:
    tokens = scan_lake_table(lake_dir, "tokens").select("token", "decimals").collect()
    return dict(zip(tokens.get_column("token").to_list(), tokens.get_column("decimals").to_list()))


__all__ = ["REGIME", "Decision", "PolicyRunner", "agent_config", "observation", "order_quantity", "order_sizes",
           "policy_name"]
