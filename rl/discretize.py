"""Discrete states for the tabular methods: quantile bins of a few market features, times the position level.

`QuantileDiscretizer` learns its bin edges from training rows only (`fit`); `transform` never changes them,
so validation and test data are binned with the training quantiles. A feature's value below the first edge
is bin 0, above the last edge is the top bin, and NaN gets a bin of its own (the last one). Ties in the
training data collapse equal edges, so a feature can end up with fewer bins than asked for.

The market state is the mixed-radix number of the per-feature bins; the agent's state is
(market state, position level): `state = market_state * levels + level` (see `StateSpace`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chainlake.errors import ConfigError


class QuantileDiscretizer:
    """Quantile bins of the chosen feature columns (indices or names), fitted on training data only."""

    def __init__(self, features: Sequence[int | str], bins: int = 3, feature_names: Sequence[str] | None = None):
        if bins < 2:
            raise ConfigError("bins must be >= 2")
        if not features:
            raise ConfigError("choose at least one feature to discretize")
        self.features = list(features)
        self.bins = bins
        self.feature_names = tuple(feature_names) if feature_names is not None else None
        self.columns: list[int] | None = None
        self.edges: list[np.ndarray] | None = None

    def _resolve(self, feature_names: Sequence[str] | None) -> list[int]:
        names = tuple(feature_names) if feature_names is not None else self.feature_names
        columns = []
        for f in self.features:
            if isinstance(f, str):
                if names is None or f not in names:
                    raise ConfigError(f"feature {f!r} is not among the episode's features {names}")
                columns.append(names.index(f))
            else:
                columns.append(int(f))
        return columns

    def fit(self, x_train: np.ndarray, feature_names: Sequence[str] | None = None) -> QuantileDiscretizer:
        """Edges at the k/bins quantiles (k = 1..bins-1) of each chosen column's finite training values."""
        x_train = np.asarray(x_train, dtype=np.float64)
        if feature_names is not None:
            self.feature_names = tuple(feature_names)
        self.columns = self._resolve(self.feature_names)
        qs = np.arange(1, self.bins) / self.bins
        self.edges = []
        for c in self.columns:
            finite = x_train[:, c][np.isfinite(x_train[:, c])]
            self.edges.append(np.unique(np.quantile(finite, qs)) if finite.size else np.empty(0))
        return self

    @property
    def fitted(self) -> bool:
        return self.edges is not None

    @property
    def radix(self) -> np.ndarray:
        """Bins per feature: the finite bins plus the NaN bin."""
        self._check()
        return np.array([len(e) + 2 for e in self.edges], dtype=np.int64)

    @property
    def n_states(self) -> int:
        return int(np.prod(self.radix))

    def _check(self):
        if self.edges is None:
            raise ConfigError("the discretizer is not fitted: call fit() on the training rows first")

    def digits(self, x: np.ndarray) -> np.ndarray:
        """Per-feature bin [N, k]: searchsorted into the train edges; NaN -> the NaN bin (len(edges) + 1)."""
        self._check()
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        out = np.empty((x.shape[0], len(self.columns)), dtype=np.int64)
        for j, (c, e) in enumerate(zip(self.columns, self.edges)):
            v = x[:, c]
            out[:, j] = np.where(np.isnan(v), len(e) + 1, np.searchsorted(e, v, side="right"))
        return out

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Market state per row [N]: the mixed-radix number of the per-feature bins."""
        d = self.digits(x)
        state = np.zeros(d.shape[0], dtype=np.int64)
        for j, r in enumerate(self.radix):
            state = state * r + d[:, j]
        return state

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        self._check()
        meta = {"features": self.features, "bins": self.bins, "columns": self.columns,
                "feature_names": list(self.feature_names) if self.feature_names else None}
        return meta, {f"edges_{j}": e for j, e in enumerate(self.edges)}

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]) -> QuantileDiscretizer:
        d = cls(meta["features"], meta["bins"], meta.get("feature_names"))
        d.columns = [int(c) for c in meta["columns"]]
        d.edges = [np.asarray(arrays[f"edges_{j}"], dtype=np.float64) for j in range(len(d.columns))]
        return d


def position_level(obs: np.ndarray, levels: int, level_share: float, n_features: int | None = None) -> np.ndarray:
    """The position level of observations [N, D]: round(position share / level_share), clipped to 0..levels-1.
    The position share follows the features (`n_features`; None: the observation minus its 2 book entries)."""
    obs = np.atleast_2d(obs)
    column = n_features if n_features is not None else obs.shape[1] - 2
    share = np.asarray(obs[:, column], dtype=np.float64)
    return np.clip(np.rint(share / level_share), 0, levels - 1).astype(np.int64)


@dataclass(frozen=True)
class StateSpace:
    """Agent state = (market state from the discretizer, position level 0..levels-1), read from the env's
    observation (`rl.env`): [features (NaN -> 0), position share = base x mid / value, cash share, ...].

    The level is the position share in units of one trade: round(position share / level_share), clipped to
    0..levels-1, where level_share = trade_size x mid / value when the book was opened (the env's
    trade_fraction when trade_size is left None). Prices moving by less than half a level's share keep the
    level right.
    """

    discretizer: QuantileDiscretizer
    levels: int = 2
    level_share: float = 1.0
    n_features: int | None = None  # features at the start of the observation; None: all but the book (2)

    @property
    def n_market(self) -> int:
        return self.discretizer.n_states

    @property
    def n_states(self) -> int:
        return self.n_market * self.levels

    def state(self, market_state: np.ndarray, level: np.ndarray) -> np.ndarray:
        return np.asarray(market_state, dtype=np.int64) * self.levels + np.asarray(level, dtype=np.int64)

    def split(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        state = np.asarray(state, dtype=np.int64)
        return state // self.levels, state % self.levels

    def _n_features(self, obs: np.ndarray) -> int:
        return self.n_features if self.n_features is not None else obs.shape[1] - 2

    def position_level(self, obs: np.ndarray) -> np.ndarray:
        return position_level(obs, self.levels, self.level_share, self.n_features)

    def market_state(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(obs)
        return self.discretizer.transform(obs[:, :self._n_features(obs)])

    def from_obs(self, obs: np.ndarray) -> np.ndarray:
        """Agent states [N] of a batch of observations [N, D] (or one [D])."""
        return self.state(self.market_state(obs), self.position_level(obs))

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta, arrays = self.discretizer.to_artifact()
        return ({"discretizer": meta, "levels": self.levels, "level_share": self.level_share,
                 "n_features": self.n_features}, arrays)

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]) -> StateSpace:
        return cls(QuantileDiscretizer.from_artifact(meta["discretizer"], arrays), int(meta["levels"]),
                   float(meta["level_share"]), meta["n_features"])
