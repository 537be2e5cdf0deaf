"""Baseline policies for the backtester: buy-and-hold, always-hold, random, momentum, and a scripted sequence.

They follow the policy protocol of `rl.backtest`: `act(obs[N, D]) -> actions[N]` (or [N, A] for the
continuous modes), and an optional `begin(env)` that the backtester calls before each run (here: to learn
the action mode and the observation columns, and to restart the random generator / the script).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chainlake.errors import ConfigError
from rl.env import BUY, HOLD, SELL


class _Baseline:
    mode = "discrete"

    def begin(self, env) -> None:
        self.mode = env.config.action_mode

    def _signed(self, direction: np.ndarray, size: float = 1.0, aggressive: bool = True) -> np.ndarray:
        """Actions from a direction per book (+1 buy, 0 hold, -1 sell) in the current action mode."""
        direction = np.sign(np.asarray(direction, dtype=np.float64))
        if self.mode == "discrete":
            return np.where(direction > 0, BUY, np.where(direction < 0, SELL, HOLD)).astype(np.int64)
        if self.mode == "fraction":
            return (direction * size).astype(np.float32)[:, None]
        # limit: price 1 x limit_max_offset on the side that fills (buy above, sell below the mid)
        offset = direction if aggressive else -direction
        return np.stack([direction * size, offset], axis=1).astype(np.float32)


class AlwaysHold(_Baseline):
    """Never trades: the cash (and any starting position) as they are."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._signed(np.zeros(len(obs)))


class BuyAndHold(_Baseline):
    """Buys at every step; the env's position limit (max_position) and the cash stop it, then it holds.

    "fraction" mode: all of the value at once. "limit" mode: `trade_fraction` of the value per order, priced
    `limit_max_offset` above the mid (an order for everything would rarely fill within the offset: its
    whole price includes its own price impact).
    """

    size = 1.0

    def begin(self, env) -> None:
        super().begin(env)
        self.size = env.config.trade_fraction if self.mode == "limit" else 1.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self._signed(np.ones(len(obs)), self.size)


class RandomPolicy(_Baseline):
    """Uniform actions: {sell, hold, buy}, or sizes (and offsets) uniform in [-1, 1]; seeded per run."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def begin(self, env) -> None:
        super().begin(env)
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.mode == "discrete":
            return self.rng.integers(0, 3, size=n)
        dims = 1 if self.mode == "fraction" else 2
        return self.rng.uniform(-1.0, 1.0, size=(n, dims)).astype(np.float32)


class Momentum(_Baseline):
    """Follows the sign of a past-return feature: buy when it is above `threshold`, sell below -threshold.

    `feature` is an observation column name (resolved in `begin`) or an index. In the continuous modes the
    trade is `size` of the value (limit orders priced to fill: `limit_max_offset` beyond the mid).
    """

    def __init__(self, feature: str | int = "mid_price__log_return_8", threshold: float = 0.0, size: float = 0.25):
        self.feature = feature
        self.threshold = threshold
        self.size = size
        self.column = feature if isinstance(feature, int) else None

    def begin(self, env) -> None:
        super().begin(env)
        if isinstance(self.feature, str):
            if self.feature not in env.obs_names:
                raise ConfigError(f"momentum feature {self.feature!r} is not in the observation {env.obs_names}")
            self.column = env.obs_names.index(self.feature)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.column is None:
            raise ConfigError("Momentum: call begin(env) first (or give the feature as a column index)")
        x = np.asarray(obs)[:, self.column]
        direction = np.where(x > self.threshold, 1.0, np.where(x < -self.threshold, -1.0, 0.0))
        return self._signed(direction, self.size)


class Scripted(_Baseline):
    """Plays a fixed sequence of actions, one per step (then holds); restarts at every `begin`."""

    def __init__(self, actions: Sequence):
        self.actions = list(actions)
        self.t = 0

    def begin(self, env) -> None:
        super().begin(env)
        self.t = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        if self.t < len(self.actions):
            a = np.asarray(self.actions[self.t])
        else:
            a = np.asarray(HOLD if self.mode == "discrete" else np.zeros(1 if self.mode == "fraction" else 2))
        self.t += 1
        if self.mode == "discrete":
            return np.broadcast_to(a.astype(np.int64), (n,)).copy()
        return np.broadcast_to(a.astype(np.float32).reshape(1, -1), (n, a.size)).copy()


def baselines(seed: int = 0, momentum_feature: str | int = "mid_price__log_return_8") -> dict[str, _Baseline]:
    """The standard set, by name."""
    return {"buy_and_hold": BuyAndHold(), "always_hold": AlwaysHold(), "random": RandomPolicy(seed),
            "momentum": Momentum(momentum_feature)}
