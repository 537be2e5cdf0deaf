"""The initial policy: supervised pre-labels from the market and a multinomial logistic regression (numpy).

Labels (per decision row t, see `prelabels`): the trade of row t executes against the reserves at the end of
market index s_t = index(b_t) + latency - 1; its future log return over `horizon_blocks` is
r_t = log mid[s_t + h] - log mid[s_t], and c_t is the round-trip cost of trade_size at s_t (a buy and a sell
priced by `rl.execution`: fee + price impact + gas, as a fraction of the notional). Then
- buy (2) if r_t - c_t > threshold (buying now and selling at t + h nets more than the threshold),
- sell (0) if -r_t - c_t > threshold (selling now and buying back at t + h does),
- hold (1) otherwise.
A label exists only if its horizon fits inside its own split: s_t + h must be a block whose end is known at
the split's last decision (index(b_last) - 1). Rows near the end of a split get no label (-1), so a label
never reads the embargo or the next split.

Classifier: softmax regression with L2 on the weights, inputs standardized with train statistics, full-batch
gradient descent, classes weighted by inverse frequency (`balanced`) so a rare buy/sell is not drowned by holds.
It is trained on the train split only; `train_supervised` reports train and validation accuracy.

How it initialises the tabular methods: `state_policy` turns it into an action per tabular state (the
classifier's majority action over the training rows of each market state, for every position level; hold for
market states without training rows). `rl.tabular.policy_iteration(mdp, initial_policy=...)` starts generalized
policy iteration from it, and `rl.qlearning` can start its Q-table from it (`initial_q`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainlake.errors import ConfigError
from rl.execution import ExecutionConfig
from rl.tabular import (
    BUY,
    HOLD,
    N_ACTIONS,
    SELL,
    DiscretePolicy,
    fill_state_index,
    observed_features,
    trade_costs,
)

NO_LABEL = -1


@dataclass
class Labels:
    """Per row of the split part: the label (-1: horizon does not fit), the future log return and the cost."""

    rows: range
    labels: np.ndarray
    future_return: np.ndarray
    cost: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.labels != NO_LABEL

    def counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.labels == a)) for name, a in (("sell", SELL), ("hold", HOLD), ("buy", BUY))}


def prelabels(episode, rows: range, horizon_blocks: int, threshold: float, trade_size: float,
              config: ExecutionConfig | None = None) -> Labels:
    """Labels of `rows` (one split part), using only blocks known by the part's last decision."""
    config = config or ExecutionConfig()
    if horizon_blocks < 1:
        raise ConfigError("horizon_blocks must be >= 1")
    rows = range(rows.start, rows.stop)
    n = len(rows)
    labels = np.full(n, NO_LABEL, dtype=np.int64)
    future, cost = np.full(n, np.nan), np.full(n, np.nan)
    if n == 0:
        return Labels(rows, labels, future, cost)
    mid = episode.market.mid
    start = fill_state_index(episode, config.latency_blocks)[rows.start:rows.stop]
    end = start + horizon_blocks
    last_known = int(episode.index[rows.stop - 1]) - 1  # the end of this block is the newest the part knows
    fits = (start >= 0) & (end <= last_known)
    idx = np.flatnonzero(fits)
    if idx.size:
        with np.errstate(divide="ignore", invalid="ignore"):
            future[idx] = np.log(mid[end[idx]] / mid[start[idx]])
        buy, sell = trade_costs(episode, range(rows.start + idx[0], rows.start + idx[-1] + 1), trade_size, config)
        offset = idx - idx[0]
        cost[idx] = (buy[offset] + sell[offset]) / (trade_size * mid[start[idx]])
    ok = np.isfinite(future) & np.isfinite(cost)
    labels[ok] = HOLD
    labels[ok & (future - cost > threshold)] = BUY
    labels[ok & (-future - cost > threshold)] = SELL
    return Labels(rows, labels, future, cost)


# --- multinomial logistic regression ----------------------------------------------------------------------

@dataclass
class LogisticModel:
    mean: np.ndarray  # [F] train mean
    std: np.ndarray  # [F] train std (1 where constant)
    weights: np.ndarray  # [F + 1, K], last row = bias
    loss_history: list[float] = field(default_factory=list)

    def logits(self, x: np.ndarray) -> np.ndarray:
        z = (observed_features(x) - self.mean) / self.std
        return z @ self.weights[:-1] + self.weights[-1]

    def proba(self, x: np.ndarray) -> np.ndarray:
        return softmax(self.logits(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(x).argmax(axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int = N_ACTIONS, l2: float = 1e-3, lr: float = 0.5,
                 iterations: int = 500, balanced: bool = True) -> LogisticModel:
    """Softmax regression by full-batch gradient descent on the (class-weighted) cross-entropy + l2/2 |W|^2."""
    x = observed_features(x)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    onehot = np.eye(n_classes)[y]
    counts = onehot.sum(axis=0)
    class_w = np.ones(n_classes)
    if balanced:
        class_w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    row_w = class_w[y] / class_w[y].sum()
    w = np.zeros((z.shape[1], n_classes))
    penalty = np.ones((z.shape[1], 1))
    penalty[-1] = 0.0  # no L2 on the bias
    history = []
    for _ in range(iterations):
        p = softmax(z @ w)
        loss = -np.sum(row_w * np.log(np.sum(p * onehot, axis=1) + 1e-300)) + 0.5 * l2 * np.sum(penalty * w * w)
        history.append(float(loss))
        grad = z.T @ (row_w[:, None] * (p - onehot)) + l2 * penalty * w
        w -= lr * grad
    return LogisticModel(mean, std, w, history)


# --- the policy ------------------------------------------------------------------------------------------

class SupervisedPolicy(DiscretePolicy):
    """Acts with the classifier on the observation's feature part (the first n_features entries)."""

    kind = "supervised"

    def __init__(self, model: LogisticModel, n_features: int, meta: dict | None = None):
        self.model = model
        self.n_features = n_features
        self.meta = meta or {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs, dtype=np.float64))
        return self.model.predict(obs[:, :self.n_features])

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        meta = {"kind": self.kind, "n_features": self.n_features, **self.meta}
        return meta, {"mean": self.model.mean, "std": self.model.std, "weights": self.model.weights}

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]) -> SupervisedPolicy:
        model = LogisticModel(arrays["mean"], arrays["std"], arrays["weights"])
        extra = {k: v for k, v in meta.items() if k not in ("kind", "n_features")}
        return cls(model, int(meta["n_features"]), extra)


def train_supervised(episode, split, horizon_blocks: int, threshold: float, trade_size: float,
                     config: ExecutionConfig | None = None, l2: float = 1e-3, lr: float = 0.5,
                     iterations: int = 500, balanced: bool = True) -> tuple[SupervisedPolicy, dict]:
    """Label train and validation separately (labels never cross a split), fit on train, report accuracies."""
    config = config or ExecutionConfig()
    train = prelabels(episode, split.train, horizon_blocks, threshold, trade_size, config)
    if train.valid.sum() < 2:
        raise ConfigError("too few labelled training rows: shorten the horizon or lengthen the train split")
    x_train = episode.features[split.train.start:split.train.stop][train.valid]
    model = fit_logistic(x_train, train.labels[train.valid], l2=l2, lr=lr, iterations=iterations, balanced=balanced)
    report = {"horizon_blocks": horizon_blocks, "threshold": threshold, "train_labels": train.counts(),
              "train_accuracy": float(np.mean(model.predict(x_train) == train.labels[train.valid])),
              "final_loss": model.loss_history[-1]}
    if len(split.validation):
        val = prelabels(episode, split.validation, horizon_blocks, threshold, trade_size, config)
        x_val = episode.features[split.validation.start:split.validation.stop][val.valid]
        report["validation_labels"] = val.counts()
        report["validation_accuracy"] = (float(np.mean(model.predict(x_val) == val.labels[val.valid]))
                                         if val.valid.any() else None)
        report["validation_hold_baseline"] = float(np.mean(val.labels[val.valid] == HOLD)) if val.valid.any() else None
    meta = {"feature_names": list(episode.feature_names), "horizon_blocks": horizon_blocks, "threshold": threshold,
            "trade_size": trade_size}
    return SupervisedPolicy(model, episode.features.shape[1], meta), report


def state_policy(policy: SupervisedPolicy, episode, rows: range, discretizer, levels: int) -> np.ndarray:
    """An action per tabular state (m * levels + p): the classifier's majority action over the training rows in
    market state m, the same for every level p; hold where m has no training rows."""
    x = observed_features(episode.features[rows.start:rows.stop])
    m = discretizer.transform(x)
    votes = np.zeros((discretizer.n_states, N_ACTIONS))
    np.add.at(votes, (m, policy.model.predict(x)), 1.0)
    per_market = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), HOLD)
    return np.repeat(per_market, levels)
