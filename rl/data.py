"""An episode: one pool's decision blocks, the features known at each, and the market to trade against.

Built from the feature store's `training_frame` (point-in-time: the features at as-of block b are
known strictly before b) and the pool's `PoolMarket`. Features that carry a direction in token0 terms
(returns, order flow, trend) are sign-flipped when the pool's base is token1, so "up" always means the
base got dearer in quote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl

from chainlake.errors import ConfigError
from chainlake.features import training_frame
from rl.market import PoolMarket, load_pool_market

# The agent's default state variables: view:column references into the feature store.
DEFAULT_FEATURES = (
    "mid_price:log_return_1", "mid_price:log_return_8", "mid_price:log_return_64",
    "realized_vol_64:realized_vol_16", "realized_vol_64:realized_vol_64",
    "order_flow_imbalance:imbalance_16", "order_flow_imbalance:imbalance_64",
    "mempool_pressure:pending_imbalance", "market_regime:regime_code", "market_regime:trend_strength",
    "price_impact:impact_buy_1", "gas_price:base_fee_gwei",
)
# Columns measured in token0's direction: negated when the base is token1.
DIRECTIONAL = ("log_return", "order_flow", "imbalance", "regime_code", "trend_strength")
REGIME = "market_regime__regime_code"


@dataclass(frozen=True)
class Episode:
    """Decision block b_t, features known at b_t (NaN: unknown), and the market (see `rl.execution` timing)."""

    market: PoolMarket
    as_of: np.ndarray  # int64 [T], increasing by `stride`
    features: np.ndarray  # float64 [T, F]
    feature_names: tuple[str, ...]
    regime: np.ndarray  # int8 [T]: +1 bull, -1 bear, 0 unknown (as known at b_t)
    stride: int = 1

    def __len__(self) -> int:
        return len(self.as_of)

    def slice(self, start: int, stop: int) -> Episode:
        """Rows start..stop-1 (positions), same market."""
        return replace(self, as_of=self.as_of[start:stop], features=self.features[start:stop],
                       regime=self.regime[start:stop])

    @property
    def index(self) -> np.ndarray:
        """Positions of the decision blocks in the market arrays."""
        return self.market.index(self.as_of)


def load_episode(lake_dir: str | Path, pool: str, features: Sequence[str] = DEFAULT_FEATURES, *, stride: int = 1,
                 first_block: int | None = None, last_block: int | None = None, latency_blocks: int = 1,
                 frame: pl.DataFrame | None = None, registry=None) -> Episode:
    """The episode of `pool`: decisions every `stride` blocks from its second market block to the last one
    whose trade (latency) and next mark (stride) still fall inside the lake.

    `frame`: a training frame already built (the `training_frame` asset: full feature names, one row per
    pool and as-of block); without it, the features are joined here with `training_frame`.
    """
    if stride < 1 or latency_blocks > stride:
        raise ConfigError(f"need 1 <= stride and latency <= stride (a fill must be known by the next decision); "
                          f"got stride {stride}, latency {latency_blocks}")
    market = load_pool_market(lake_dir, pool, first_block, last_block)
    check_fresh(lake_dir, features, int(market.blocks[-1]), registry)
    first = -(-(int(market.blocks[0]) + 1) // stride) * stride  # on the stride grid, as the training_frame asset
    last = int(market.blocks[-1]) - stride  # its trade (latency <= stride) and next mark fall inside the lake
    if last < first:
        raise ConfigError(f"pool {pool}: too few blocks for one decision")
    as_of = np.arange(first, last + 1, stride, dtype=np.int64)
    names = [column_name(ref) for ref in features]
    entities = pl.DataFrame({"pool": [market.pool] * len(as_of), "block_number": as_of})
    if frame is None:
        refs = list(dict.fromkeys([*features, "market_regime:regime_code"]))
        frame = training_frame(entities, refs, lake_dir=lake_dir, registry=registry, full_feature_names=True)
    else:
        missing = [n for n in (*names, REGIME) if n not in frame.columns]
        if missing:
            raise ConfigError(f"the training frame lacks {missing}: rebuild it with these views")
        frame = entities.join(frame, on=["pool", "block_number"], how="inner")
        if frame.height != len(as_of):
            raise ConfigError(f"the training frame has {frame.height} of the {len(as_of)} (pool, block) rows this "
                              f"episode needs (stride {stride}): rebuild it with stride 1 or a matching stride")
    return episode_from_frame(frame, market, names, stride)


def check_fresh(lake_dir: str | Path, features: Sequence[str], head: int, registry=None) -> None:
    """Refuse feature views built before the lake's newest blocks: past their TTL the features would turn
    null, silently, in exactly the newest (test) blocks."""
    for view, last in stale_views(lake_dir, features, head - 1, registry):  # a decision at the head needs head - 1
        raise ConfigError(f"{view.where()} is built through block {last}, but the lake reaches {head}: "
                          f"run `chainlake features build` first")


def stale_views(lake_dir: str | Path, features: Sequence[str], through: int, registry=None) -> list[tuple]:
    """(view, block it is built through) for each view of `features` (and the regime view episodes carry)
    not built through block `through`."""
    from chainlake.features import load_registry
    from chainlake.features.frames import built_through

    registry = registry or load_registry()
    stale = []
    for name in dict.fromkeys(ref.partition(":")[0] for ref in [*features, "market_regime:regime_code"]):
        view = registry.get(name)
        last = built_through(lake_dir, view)
        if last is None or last < through:
            stale.append((view, last))
    return stale


def column_name(ref: str) -> str:
    """`view:column` -> the training frame's full name `view__column`."""
    view, sep, column = ref.partition(":")
    if not sep:
        raise ConfigError(f"episode feature {ref!r}: use view:column (e.g. mid_price:log_return_8)")
    return f"{view}__{column}"


def episode_from_frame(frame: pl.DataFrame, market: PoolMarket, names: Sequence[str], stride: int) -> Episode:
    """An episode from a frame sorted by as-of block with full feature names, oriented to the market's base."""
    frame = frame.sort("block_number")
    matrix = frame.select([pl.col(n).cast(pl.Float64) for n in names]).to_numpy()
    regime = frame.get_column(REGIME).fill_null(0).cast(pl.Int8).to_numpy()
    if not market.base_is_token0:
        flip = np.array([-1.0 if any(k in n for k in DIRECTIONAL) else 1.0 for n in names])
        matrix, regime = matrix * flip, -regime
    return Episode(market, frame.get_column("block_number").to_numpy(), matrix, tuple(names), regime, stride)
