"""Tabular MDP: a trading MDP estimated from training rows, then policy iteration and value iteration.

Generic part: an MDP is anything with `n_states`, `n_actions`, `gamma`, `reward` [S, A] and
`expected_next(V) -> [S, A]` (sum over s' of P(s'|s,a) V(s')). `DenseMDP` holds P [A, S, S] (hand-made MDPs,
tests); `TradingMDP` is factored (market x position) so it scales to many market states.
`policy_evaluation`, `policy_iteration`, `value_iteration` return a `DPResult` with the convergence history
(max |dV| per sweep) so a report can show how fast each method converged.

The trading MDP (model assumptions, estimated on the training rows only, from what the split's last decision
knows):
- state = (market state m from the `QuantileDiscretizer`, position level p in 0..L-1); level p holds
  p x trade_size base (0 = flat), where trade_size is what one buy really fills (`TradingSpec.from_env`);
- actions 0 sell / 1 hold / 2 buy move the level by -1 / 0 / +1, clipped to [0, L-1] (a sell when flat or a
  buy at the cap does nothing and costs nothing, as in `rl.execution`);
- the agent is a price taker: its action does not change the market state, so
  P((m', p') | (m, p), a) = P(m' | m) * 1[p' = clip(p + a - 1)], with P(m' | m) counted from consecutive
  training rows (a market state never seen in training stays where it is);
- reward R(m, p, a) = p' * E[g | m] - c * |p' - p|: g is one level's mark-to-market P&L until the next decision
  (trade_size x the change of the mid between the two fills, see `holding_pnl`), averaged over the training
  rows in m; c is the typical cost of one trade of trade_size (pool fee + price impact + gas from
  `rl.execution.execute`, the mean of a buy and a sell over the training rows, see `typical_trade_cost`);
  both divided by `spec.value_scale` so they are in the env's reward units. The P&L is credited fill to fill,
  to the state that chose the position; the env pays the same amounts mark to mark (with latency = stride,
  one step later), so undiscounted sums agree;
- discount gamma; ties between actions go to hold (no trade without a reason).

Market states without training rows are not covered by the model: `TabularPolicy` hands them to its
`fallback` (the linear Q of `rl.linear`). `train_policies` runs every learner of issue 4 on one split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainlake.errors import ConfigError
from rl.execution import ExecutionConfig, execute

SELL, HOLD, BUY = 0, 1, 2
N_ACTIONS = 3


# --- generic MDPs and dynamic programming ----------------------------------------------------------------

@dataclass
class DenseMDP:
    """P[a, s, s'] and expected reward R[s, a]."""

    P: np.ndarray
    reward: np.ndarray
    gamma: float

    def __post_init__(self):
        self.P = np.asarray(self.P, dtype=np.float64)
        self.reward = np.asarray(self.reward, dtype=np.float64)
        if not np.allclose(self.P.sum(axis=2), 1.0):
            raise ConfigError("every P[a, s, :] must sum to 1")
        if not 0 <= self.gamma < 1:
            raise ConfigError("gamma must be in [0, 1)")

    @property
    def n_states(self) -> int:
        return self.P.shape[1]

    @property
    def n_actions(self) -> int:
        return self.P.shape[0]

    def expected_next(self, values: np.ndarray) -> np.ndarray:
        return (self.P @ values).T  # [A, S] -> [S, A]


@dataclass
class DPResult:
    """A DP solution and how it converged."""

    method: str
    policy: np.ndarray  # [S] int
    values: np.ndarray  # [S]
    q: np.ndarray  # [S, A]
    iterations: int  # VI: sweeps; PI: improvement steps
    converged: bool
    history: list[float] = field(default_factory=list)  # max |dV| per sweep (all evaluation sweeps for PI)
    policy_changes: list[int] = field(default_factory=list)  # PI: states whose action changed per improvement
    eval_sweeps: list[int] = field(default_factory=list)  # PI: evaluation sweeps per improvement step

    def summary(self) -> dict:
        return {"method": self.method, "iterations": self.iterations, "converged": self.converged,
                "sweeps": len(self.history), "final_delta": self.history[-1] if self.history else None,
                "policy_changes": self.policy_changes, "eval_sweeps": self.eval_sweeps}


def q_values(mdp, values: np.ndarray) -> np.ndarray:
    """Q[s, a] = R[s, a] + gamma * E[V(s') | s, a]."""
    return mdp.reward + mdp.gamma * mdp.expected_next(values)


def greedy(q: np.ndarray, prefer: np.ndarray | int | None = None) -> np.ndarray:
    """argmax_a Q[s, a]; among (numerically) tied actions, `prefer` (per state or one action) wins if tied."""
    best = q.max(axis=1, keepdims=True)
    tied = np.isclose(q, best, rtol=1e-9, atol=1e-12)
    action = tied.argmax(axis=1)
    if prefer is not None:
        prefer = np.broadcast_to(np.asarray(prefer, dtype=np.int64), action.shape)
        action = np.where(tied[np.arange(len(action)), prefer], prefer, action)
    return action


def policy_evaluation(mdp, policy: np.ndarray, values: np.ndarray | None = None, tol: float = 1e-10,
                      max_sweeps: int = 100_000) -> tuple[np.ndarray, list[float]]:
    """Iterative evaluation of a deterministic policy: V <- R_pi + gamma P_pi V until max |dV| < tol."""
    states = np.arange(mdp.n_states)
    v = np.zeros(mdp.n_states) if values is None else values.astype(np.float64).copy()
    history = []
    for _ in range(max_sweeps):
        new = q_values(mdp, v)[states, policy]
        delta = float(np.max(np.abs(new - v))) if len(v) else 0.0
        v = new
        history.append(delta)
        if delta < tol:
            break
    return v, history


def policy_iteration(mdp, initial_policy: np.ndarray | None = None, tol: float = 1e-10, max_iterations: int = 1000,
                     prefer: int | None = None) -> DPResult:
    """Evaluate the policy, improve it greedily, repeat until no state changes its action.

    Starts from `initial_policy` (e.g. the supervised policy per state) or from `prefer`/action 0 everywhere.
    Ties keep the current action, so the loop ends.
    """
    policy = (np.full(mdp.n_states, prefer or 0, dtype=np.int64) if initial_policy is None
              else np.asarray(initial_policy, dtype=np.int64).copy())
    values, history, changes, sweeps = None, [], [], []
    converged = False
    for it in range(1, max_iterations + 1):
        values, h = policy_evaluation(mdp, policy, values, tol)
        history += h
        sweeps.append(len(h))
        q = q_values(mdp, values)
        new = greedy(q, prefer=policy)
        changes.append(int(np.sum(new != policy)))
        policy = new
        if changes[-1] == 0:
            converged = True
            break
    values, h = policy_evaluation(mdp, policy, values, tol)
    history += h
    q = q_values(mdp, values)
    if prefer is not None and converged:
        policy = greedy(q, prefer)  # among tied optimal actions, the preferred one (as value iteration picks)
    return DPResult("policy_iteration", policy, values, q, it, converged, history, changes, sweeps)


def value_iteration(mdp, tol: float = 1e-10, max_sweeps: int = 100_000, prefer: int | None = None) -> DPResult:
    """V <- max_a Q(V) until max |dV| < tol; the policy is greedy in the final Q."""
    v = np.zeros(mdp.n_states)
    history = []
    converged = False
    for _ in range(max_sweeps):
        new = q_values(mdp, v).max(axis=1)
        delta = float(np.max(np.abs(new - v))) if len(v) else 0.0
        v = new
        history.append(delta)
        if delta < tol:
            converged = True
            break
    q = q_values(mdp, v)
    return DPResult("value_iteration", greedy(q, prefer), v, q, len(history), converged, history)


# --- the trading model: per-row P&L and costs from the market ---------------------------------------------

@dataclass(frozen=True)
class TradingSpec:
    """What one discrete action trades and how rewards are scaled: the env's settings (`TradingSpec.from_env`)."""

    trade_size: float  # base units per buy / sell
    max_units: int = 1  # the position cap in trade_size units: levels 0..max_units
    config: ExecutionConfig = field(default_factory=ExecutionConfig)
    value_scale: float = 1.0  # rewards = quote P&L / value_scale (the env's 1 / reward_scale)
    level_share: float = 1.0  # the observation's position share of one level (trade_size x mid / value)

    @property
    def levels(self) -> int:
        return self.max_units + 1

    @classmethod
    def from_env(cls, env_config, episode, rows: range | None = None, max_levels: int = 4) -> TradingSpec:
        """The spec of an `rl.env.EnvConfig` in "discrete" mode over the training `rows` (default: all).

        Sizes are resolved as the env resolves them when a book opens at the first row (its known mid: the
        end of block b - 1). One level is what a buy of trade_size from a fresh book really fills: the median
        over the rows of `rl.execution.execute`'s fill, which is less than trade_size when the pool's
        liquidity cap (max_reserve_fraction) or the cash binds. The position cap becomes max_position / that
        fill, at most `max_levels` units (the tabular policies never buy past their top level: there a buy
        is worth what a hold is, and ties go to hold).
        """
        rows = range(len(episode)) if rows is None else rows
        mid = float(episode.market.mid[episode.index[rows.start] - 1])
        value = env_config.initial_quote + env_config.initial_base * mid
        size = env_config.trade_size if env_config.trade_size is not None else env_config.trade_fraction * value / mid
        cap = (env_config.max_position if env_config.max_position is not None
               else env_config.max_position_fraction * value / mid)
        exec_index = episode.index[rows.start:rows.stop] + env_config.execution.latency_blocks
        n = len(exec_index)
        fills = execute(episode.market, exec_index, size, np.zeros(n), np.full(n, value), env_config.execution)
        traded = fills.base_delta[fills.traded]
        if traded.size == 0:
            raise ConfigError(f"a buy of {size:g} base never fills on these rows (liquidity, cash or gas)")
        unit = float(min(size, np.median(traded)))
        units = int(np.clip(np.floor(cap / unit + 1e-9), 1, max_levels))
        return cls(unit, units, env_config.execution, 1.0 / env_config.reward_scale, unit * mid / value)

    def to_meta(self) -> dict:
        return {"trade_size": self.trade_size, "max_units": self.max_units, "value_scale": self.value_scale,
                "level_share": self.level_share, "config": dict(self.config.__dict__)}

    @classmethod
    def from_meta(cls, meta: dict) -> TradingSpec:
        return cls(meta["trade_size"], meta["max_units"], ExecutionConfig(**meta["config"]), meta["value_scale"],
                   meta["level_share"])


def observed_features(features: np.ndarray) -> np.ndarray:
    """Features exactly as the env shows them to the agent: non-finite (unknown) -> 0, rounded to float32."""
    f = np.asarray(features, dtype=np.float64)
    return np.where(np.isfinite(f), f, 0.0).astype(np.float32).astype(np.float64)


def fill_state_index(episode, latency_blocks: int) -> np.ndarray:
    """Per row: the market index whose end-of-block reserves the row's trade executes against."""
    return episode.index + latency_blocks - 1


def holding_pnl(episode, trade_size: float, latency_blocks: int) -> np.ndarray:
    """Per row t: P&L in quote of holding trade_size base from row t's fill to row t+1's fill (NaN on the last
    row): trade_size x (mid at the next fill - mid at this fill)."""
    mid = episode.market.mid[fill_state_index(episode, latency_blocks)]
    out = np.full(len(mid), np.nan)
    out[:-1] = trade_size * np.diff(mid)
    return out


def trade_costs(episode, rows, trade_size: float, config: ExecutionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(buy cost, sell cost) in quote per row: pool fee + price impact + gas of a trade of trade_size landing
    at the row's execution block, with balances large enough not to cap it (`rl.execution.execute`)."""
    market = episode.market
    exec_index = episode.index[rows] + config.latency_blocks
    state = np.maximum(exec_index - 1, 0)
    rich = 1e6 * trade_size * np.nanmax(market.mid[state]) + 1.0
    costs = []
    for qty in (trade_size, -trade_size):
        fills = execute(market, exec_index, qty, np.full(len(exec_index), 10.0 * trade_size),
                        np.full(len(exec_index), rich), config)
        costs.append(fills.fee_quote + fills.slippage_quote + fills.gas_quote)
    return costs[0], costs[1]


def typical_trade_cost(episode, rows, spec: TradingSpec) -> float:
    """The mean cost of one trade (a buy and a sell averaged) over the rows, in quote."""
    buy, sell = trade_costs(episode, rows, spec.trade_size, spec.config)
    return float(np.nanmean((buy + sell) / 2.0))


# --- the trading MDP ---------------------------------------------------------------------------------------

@dataclass
class TradingMDP:
    """Factored trading MDP (see the module docstring): market transitions x deterministic position moves."""

    market_P: np.ndarray  # [M, M] P(m' | m)
    hold_reward: np.ndarray  # [M] E[one level's P&L | m], scaled
    cost: float  # one trade's cost, scaled
    levels: int
    gamma: float
    counts: np.ndarray  # [M] training rows per market state (transitions counted from them)

    def __post_init__(self):
        p = np.arange(self.levels)[:, None]
        self.next_level = np.clip(p + np.arange(N_ACTIONS)[None, :] - 1, 0, self.levels - 1)  # [L, A]
        trades = np.abs(self.next_level - p)
        self.reward = (self.next_level[None, :, :] * self.hold_reward[:, None, None]
                       - self.cost * trades[None, :, :]).reshape(-1, N_ACTIONS)

    @property
    def n_market(self) -> int:
        return len(self.hold_reward)

    @property
    def n_states(self) -> int:
        return self.n_market * self.levels

    @property
    def n_actions(self) -> int:
        return N_ACTIONS

    def expected_next(self, values: np.ndarray) -> np.ndarray:
        ev = self.market_P @ values.reshape(self.n_market, self.levels)  # [M, L]: E[V(m', p') | m] per p'
        return ev[:, self.next_level].reshape(-1, N_ACTIONS)  # [M, L, A] -> [S, A]

    def dense(self) -> DenseMDP:
        """The same MDP with an explicit P[a, s, s'] (small MDPs only: tests)."""
        s = self.n_states
        P = np.zeros((N_ACTIONS, s, s))
        for m in range(self.n_market):
            for p in range(self.levels):
                for a in range(N_ACTIONS):
                    q = self.next_level[p, a]
                    P[a, m * self.levels + p, np.arange(self.n_market) * self.levels + q] = self.market_P[m]
        return DenseMDP(P, self.reward, self.gamma)


def estimate_trading_mdp(episode, rows: range, discretizer, spec: TradingSpec, gamma: float = 0.99,
                         smoothing: float = 0.0) -> TradingMDP:
    """Count P(m' | m) and average the next-step P&L per market state over consecutive pairs of `rows` (the
    training split), and price one trade at the training rows' typical cost. `discretizer` must already be
    fitted on the same rows. `smoothing` adds pseudo-counts to every transition of a visited state."""
    rows = range(rows.start, rows.stop)
    if len(rows) < 2:
        raise ConfigError("need at least two training rows to estimate transitions")
    m = discretizer.transform(observed_features(episode.features[rows.start:rows.stop]))
    latency = spec.config.latency_blocks
    pnl = holding_pnl(episode, spec.trade_size, latency)[rows.start:rows.stop - 1]
    # only P&L the split's last decision knows: the next fill's block must end before it
    next_fill = fill_state_index(episode, latency)[rows.start + 1:rows.stop]
    pnl = np.where(next_fill <= episode.index[rows.stop - 1] - 1, pnl, np.nan)
    src, dst = m[:-1], m[1:]
    n = discretizer.n_states
    counts = np.zeros((n, n))
    np.add.at(counts, (src, dst), 1.0)
    visits = counts.sum(axis=1)
    counts[visits > 0] += smoothing
    P = np.where(visits[:, None] > 0, counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-300), 0.0)
    unseen = np.flatnonzero(visits == 0)
    P[unseen, unseen] = 1.0  # a market state never seen in training stays put
    ok = np.isfinite(pnl)  # a block without a price (no reserves yet) adds no P&L sample
    total, seen = np.zeros(n), np.zeros(n)
    np.add.at(total, src[ok], pnl[ok])
    np.add.at(seen, src[ok], 1.0)
    hold = np.where(seen > 0, total / np.maximum(seen, 1), 0.0) / spec.value_scale
    cost = typical_trade_cost(episode, range(rows.start, rows.stop - 1), spec) / spec.value_scale
    return TradingMDP(P, hold, cost, spec.levels, gamma, visits)


# --- the policies' shared protocol ------------------------------------------------------------------------------

class DiscretePolicy:
    """The protocol of `rl.backtest`: act(obs[N, D]) -> actions[N] in {0 sell, 1 hold, 2 buy}, and begin(env),
    which checks that the env is in "discrete" mode and shows the features the policy was trained on."""

    meta: dict

    def begin(self, env) -> None:
        if env.config.action_mode != "discrete":
            raise ConfigError(f"{type(self).__name__} acts in 'discrete' mode; the env is in "
                              f"{env.config.action_mode!r}")
        names = self.meta.get("feature_names")
        if names is not None and tuple(env.feature_names) != tuple(names):
            raise ConfigError(f"{type(self).__name__} was trained on features {names}, the env shows "
                              f"{list(env.feature_names)}")


# --- the policy --------------------------------------------------------------------------------------------

class TabularPolicy(DiscretePolicy):
    """Acts by table lookup: action = table[state of the observation] (`rl.discretize.StateSpace`).

    Market states without training rows (`covered` False) are not in the model's data: their action comes from
    `fallback` (e.g. a `rl.linear.LinearPolicy`) when given, else from the table (hold-biased by the model).
    """

    kind = "tabular"

    def __init__(self, space, table: np.ndarray, covered: np.ndarray | None = None, fallback=None,
                 values: np.ndarray | None = None, meta: dict | None = None):
        self.space = space
        self.table = np.asarray(table, dtype=np.int64)
        self.covered = np.ones(space.n_market, dtype=bool) if covered is None else np.asarray(covered, dtype=bool)
        self.fallback = fallback
        self.values = values
        self.meta = meta or {}

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(np.asarray(obs))
        market, level = self.space.market_state(obs), self.space.position_level(obs)
        actions = self.table[self.space.state(market, level)]
        uncovered = ~self.covered[market]
        if self.fallback is not None and uncovered.any():
            actions[uncovered] = self.fallback.act(obs[uncovered])
        return actions

    def to_artifact(self) -> tuple[dict, dict[str, np.ndarray]]:
        own = {"table": self.table, "covered": self.covered}
        if self.values is not None:
            own["values"] = self.values
        return pack_artifact(self.kind, self.space, self.meta, own, self.fallback)

    @classmethod
    def from_artifact(cls, meta: dict, arrays: dict[str, np.ndarray]):
        from rl.discretize import StateSpace

        space = StateSpace.from_artifact(meta["space"], _sub(arrays, "space."))
        fallback = policy_from_artifact(meta["fallback"], _sub(arrays, "fallback.")) if "fallback" in meta else None
        extra = {k: v for k, v in meta.items() if k not in ("kind", "space", "fallback")}
        return cls(space, arrays["table"], arrays["covered"], fallback, arrays.get("values"), extra)


def pack_artifact(kind: str, space, meta: dict, own: dict[str, np.ndarray], fallback) -> tuple[dict, dict]:
    """A state-space policy's artifact: its own arrays, the state space's under `space.`, the fallback's under
    `fallback.` (read back with `policy_from_artifact`)."""
    space_meta, space_arrays = space.to_artifact()
    arrays = {f"space.{k}": v for k, v in space_arrays.items()} | own
    out = {"kind": kind, "space": space_meta, **meta}
    if fallback is not None:
        fb_meta, fb_arrays = fallback.to_artifact()
        out["fallback"] = fb_meta
        arrays |= {f"fallback.{k}": v for k, v in fb_arrays.items()}
    return out, arrays


def _sub(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def policy_from_artifact(meta: dict, arrays: dict[str, np.ndarray]):
    """Rebuild any policy of this package from its `to_artifact()` output (dispatch on meta["kind"])."""
    from rl.linear import LinearPolicy
    from rl.qlearning import QPolicy
    from rl.supervised import SupervisedPolicy

    kinds = {c.kind: c for c in (TabularPolicy, QPolicy, LinearPolicy, SupervisedPolicy)}
    if meta.get("kind") not in kinds:
        raise ConfigError(f"unknown policy kind {meta.get('kind')!r}; known: {sorted(kinds)}")
    return kinds[meta["kind"]].from_artifact(meta, arrays)


# --- all together: fit on the train split, solve, report -------------------------------------------------------

def fit_state_space(episode, rows: range, features, bins: int, spec: TradingSpec):
    """A `StateSpace` whose discretizer is fitted on the training rows only (as the env shows them)."""
    from rl.discretize import QuantileDiscretizer, StateSpace

    disc = QuantileDiscretizer(features, bins, episode.feature_names)
    disc.fit(observed_features(episode.features[rows.start:rows.stop]))
    return StateSpace(disc, spec.levels, spec.level_share, episode.features.shape[1])


def train_tabular(episode, split, spec: TradingSpec, features, bins: int = 3, gamma: float = 0.99,
                  initial_policy: np.ndarray | None = None, tol: float = 1e-10, fallback=None,
                  method: str = "policy_iteration") -> tuple[TabularPolicy, dict]:
    """Discretize (train quantiles), estimate the trading MDP on split.train, solve it by policy iteration
    (from `initial_policy`, e.g. `rl.supervised.state_policy`) and by value iteration; the policy of `method`
    is returned, the report has both methods' convergence and whether they agree."""
    space = fit_state_space(episode, split.train, features, bins, spec)
    mdp = estimate_trading_mdp(episode, split.train, space.discretizer, spec, gamma)
    pi = policy_iteration(mdp, initial_policy, tol, prefer=HOLD)
    vi = value_iteration(mdp, tol, prefer=HOLD)
    chosen = pi if method == "policy_iteration" else vi
    covered = mdp.counts > 0
    report = {"n_market_states": space.n_market, "n_states": space.n_states,
              "covered_market_states": int(covered.sum()), "trade_cost": mdp.cost, "gamma": gamma,
              "policy_iteration": pi.summary(), "value_iteration": vi.summary(),
              "policies_agree": float(np.mean(pi.policy == vi.policy)),
              "max_value_gap": float(np.max(np.abs(pi.values - vi.values))),
              "histories": {"policy_iteration": pi.history, "value_iteration": vi.history}}  # max |dV| per sweep
    meta = {"method": method, "gamma": gamma, "spec": spec.to_meta(), "feature_names": list(episode.feature_names),
            "dp": chosen.summary()}
    return TabularPolicy(space, chosen.policy, covered, fallback, chosen.values, meta), report


@dataclass(frozen=True)
class LearnConfig:
    """Settings of `train_policies` (record them in the policy's meta)."""

    state_features: tuple[str, ...] = ("mid_price__log_return_8", "order_flow_imbalance__imbalance_16",
                                       "market_regime__regime_code")
    bins: int = 3
    gamma: float = 0.99
    horizon_blocks: int = 16  # supervised pre-labels; use an embargo of at least rl.splits.embargo_rows(horizon)
    threshold: float = 0.0
    max_levels: int = 4
    q_episodes: int = 20  # passes' worth of transitions over the train rows
    q_alpha: float = 0.1
    q_num_envs: int = 8  # books stepped together (rl.env.VectorTradingEnv); 1: one TradingEnv, whole passes
    seed: int = 0


def train_policies(episode, split, env_config, learn: LearnConfig | None = None) -> tuple[dict, dict]:
    """Every learner on split.train, in order: supervised (the initial policy), linear fitted-Q, the tabular MDP
    solved by policy iteration started from the supervised policy (linear fallback for uncovered market
    states), then Q-learning and SARSA on the env with the Q-table started from the supervised policy.
    Returns ({name: policy}, report) with the validation accuracy, every method's convergence and how far the
    model-free tables agree with the DP policy."""
    from rl.linear import train_linear
    from rl.qlearning import initial_q, train_q
    from rl.supervised import state_policy, train_supervised

    learn = learn or LearnConfig()
    spec = TradingSpec.from_env(env_config, episode, split.train, learn.max_levels)
    supervised, sup_report = train_supervised(episode, split, learn.horizon_blocks, learn.threshold, spec.trade_size,
                                              spec.config)
    linear, lin_report = train_linear(episode, split, spec, learn.gamma)
    space = fit_state_space(episode, split.train, list(learn.state_features), learn.bins, spec)
    init = state_policy(supervised, episode, split.train, space.discretizer, spec.levels)
    tabular, dp_report = train_tabular(episode, split, spec, list(learn.state_features), learn.bins, learn.gamma,
                                       initial_policy=init, fallback=linear)
    policies = {"supervised": supervised, "linear": linear, "tabular": tabular}
    report = {"spec": spec.to_meta(), "learn": dict(learn.__dict__), "split": split.as_dict(),
              "supervised": sup_report, "linear": lin_report, "tabular": dp_report}
    for method in ("q_learning", "sarsa"):
        policy, td_report = train_q(episode, split, space, env_config, method, learn.q_episodes, initial_q(init),
                                    linear, learn.seed, tabular.table, learn.q_num_envs, gamma=learn.gamma,
                                    alpha=learn.q_alpha)
        policies[method] = policy
        report[method] = {k: v for k, v in td_report.items() if k != "returns"}
    return policies, report
