"""Linear function approximation for the states the table cannot cover: fitted-Q iteration on the training rows.

Q(x, p, a) = w[p, a] . phi(x), phi(x) = [features standardized with train statistics and clipped to +-5, 1]:
one linear head per (position level p, action a), so the value of holding can depend on the features
(a linear return forecast) while the position dynamics stay exact. All the features of the episode are used,
not just the few the table discretizes, so it generalizes to unseen feature combinations.

Fitted-Q iteration (offline, on the train split only). The agent is a price taker (same assumption as the
tabular MDP, `rl.tabular`), so every (row t, level p, action a) is a valid counterfactual sample:
    p'   = clip(p + a - 1, 0, L - 1)
    r    = p' * g_t - c * |p' - p|                        g_t: one level's P&L from fill t to fill t+1
    y    = r + gamma * max_a' Q_k(x_{t+1}, p', a')        (rewards / value_scale, as in the env)
    Q_{k+1} = ridge regression of y on phi(x_t), for each (p, a)
until the largest change of Q on the training rows is below `tol` x max(1, max |Q|) (history reported per
iteration; it contracts roughly like gamma^k, so gamma 0.99 needs ~2,000 iterations, ~2 s on 2,000 rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainlake.errors import ConfigError
from rl.discretize import position_level
from rl.tabular import (
    HOLD,
    N_ACTIONS,
    DiscretePolicy,
    TradingSpec,
    fill_state_index,
    greedy,
    holding_pnl,
    observed_features,
    typical_trade_cost,
)

CLIP = 5.0


@dataclass
class LinearQ:
    mean: np.ndarray  # [F]
    std: np.ndarray  # [F]
    weights: np.ndarray  # [L, A, F + 1]
    history: list[float] = field(default_factory=list)  # max |dQ| per FQI iteration
    converged: bool = False
    diverged: bool = False  # FQI with linear features can blow up (the deadly triad): then Q is all zeros

    def phi(self, x: np.ndarray) -> np.ndarray:
        z = np.clip((observed_features(x) - self.mean) / self.std, -CLIP, CLIP)
        return np.hstack([z, np.ones((len(z), 1))])

    def q_all(self, x: np.ndarray) -> np.ndarray:
        """Q for every level and action: [N, L, A]."""
        return np.einsum("nf,laf->nla", self.phi(x), self.weights)


def fitted_q_iteration(episode, rows: range, spec: TradingSpec, gamma: float = 0.99, l2: float = 1.0,
                       iterations: int = 5000, tol: float = 1e-10) -> LinearQ:
    """FQI on consecutive pairs of `rows` (the train split), see the module docstring."""
    rows = range(rows.start, rows.stop)
    if len(rows) < 3:
        raise ConfigError("need at least three training rows for fitted-Q iteration")
    x = observed_features(episode.features[rows.start:rows.stop])
    latency = spec.config.latency_blocks
    g = holding_pnl(episode, spec.trade_size, latency)[rows.start:rows.stop - 1]
    next_fill = fill_state_index(episode, latency)[rows.start + 1:rows.stop]
    ok = np.isfinite(g) & (next_fill <= episode.index[rows.stop - 1] - 1)  # known by the split's last decision
    g = g[ok] / spec.value_scale
    cost = typical_trade_cost(episode, range(rows.start, rows.stop - 1), spec) / spec.value_scale
    mean, std = x.mean(axis=0), x.std(axis=0)
    model = LinearQ(mean, np.where(std > 1e-12, std, 1.0), np.zeros((spec.levels, N_ACTIONS, x.shape[1] + 1)))
    phi_now, x_next = model.phi(x[:-1][ok]), x[1:][ok]
    gram = phi_now.T @ phi_now + l2 * np.eye(phi_now.shape[1])
    gram[-1, -1] -= l2  # no penalty on the bias
    levels = np.arange(spec.levels)[:, None]
    nxt = np.clip(levels + np.arange(N_ACTIONS)[None, :] - 1, 0, spec.levels - 1)  # [L, A]
    reward = nxt[None] * g[:, None, None] - cost * np.abs(nxt - levels)[None]  # [N, L, A]
    q_now = np.zeros((len(g), spec.levels, N_ACTIONS))
    bound = diverged_bound(reward, gamma)
    for _ in range(iterations):
        v_next = model.q_all(x_next).max(axis=2)  # [N, L]: max_a' Q(x_{t+1}, p', a')
        y = reward + gamma * v_next[:, nxt]  # [N, L, A]
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.linalg.solve(gram, phi_now.T @ y.reshape(len(g), -1))  # [F + 1, L * A]
        model.weights = w.T.reshape(spec.levels, N_ACTIONS, -1)
        q_new = model.q_all(x[:-1][ok])
        if not np.all(np.isfinite(q_new)) or float(np.max(np.abs(q_new))) > bound:
            # beyond any discounted sum of the rewards seen: the iteration diverges; a zero Q holds
            model.weights = np.zeros_like(model.weights)
            model.diverged = True
            break
        delta = float(np.max(np.abs(q_new - q_now)))
        model.history.append(delta)
        q_now = q_new
        if delta < tol * max(1.0, float(np.max(np.abs(q_new)))):
            model.converged = True
            break
    return model


def diverged_bound(reward: np.ndarray, gamma: float) -> float:
    """No true Q value exceeds max|r| / (1 - gamma); FQI past 100x that is diverging, not converging."""
    top = float(np.max(np.abs(reward))) if reward.size else 0.0
    return 100.0 * max(top, 1e-12) / max(1.0 - gamma, 1e-6)


class LinearPolicy(DiscretePolicy):
    """Greedy in the linear Q at the observation's position level (ties -> hold)."""

    kind = "linear"

    def __init__(self, model: LinearQ, levels: int, level_share: float, n_features: int, meta: dict | None = None):
        self.model, self.levels, self.level_share, self.n_features = model, levels, level_share, n_features
        self.meta = meta or {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        level = position_level(obs, self.levels, self.level_share, self.n_features)
        q = self.model.q_all(obs[:, :self.n_features])[np.arange(len(obs)), level]
        return greedy(q, HOLD)

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"kind": self.kind, "levels": self.levels, "level_share": self.level_share,
                "n_features": self.n_features, **self.meta}
        return meta, {"mean": self.model.mean, "std": self.model.std, "weights": self.model.weights}

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LinearPolicy:
        extra = {k: v for k, v in meta.items() if k not in ("kind", "levels", "level_share", "n_features")}
        return cls(LinearQ(arrays["mean"], arrays["std"], arrays["weights"]), int(meta["levels"]),
                   float(meta["level_share"]), int(meta["n_features"]), extra)


def train_linear(episode, split, spec: TradingSpec, gamma: float = 0.99, l2: float = 1.0, iterations: int = 5000,
                 tol: float = 1e-10) -> tuple[LinearPolicy, dict]:
    """Fitted-Q iteration on split.train; the report has the iterations and whether the last change was below tol."""
    model = fitted_q_iteration(episode, split.train, spec, gamma, l2, iterations, tol)
    report = {"iterations": len(model.history), "final_delta": model.history[-1] if model.history else None,
              "converged": model.converged, "diverged": model.diverged}
    meta = {"gamma": gamma, "l2": l2, "spec": spec.to_meta(), "feature_names": list(episode.feature_names),
            "fqi": report}
    return LinearPolicy(model, spec.levels, spec.level_share, episode.features.shape[1], meta), report
