"""Learning for the trading agent: time splits, the discretizer, DP on known MDPs, Q-learning / SARSA, supervised
pre-labels, linear fitted-Q, and the learned policies on the env.

No lake and no node: hand-made MDPs, and synthetic markets (a `PoolMarket` built directly, a deep constant
product pool whose drift follows a hidden persistent regime) with point-in-time synthetic features. Feature
0 ("trend") shows the regime of the last known block: a learner that uses it must make money net of fees,
one that ignores it cannot (random trading loses), which makes the end-to-end checks sharp.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace

import gymnasium
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from chainlake.errors import ConfigError
from rl.data import Episode
from rl.discretize import QuantileDiscretizer, StateSpace
from rl.env import EnvConfig, TradingEnv
from rl.linear import LinearPolicy, train_linear
from rl.market import PoolMarket
from rl.policy_store import load_policy, save_policy
from rl.qlearning import MDPEnv, QPolicy, initial_q, q_learning, sarsa, td_control_vector, train_q
from rl.splits import Split, embargo_rows, regime_switches, regime_transition_folds, time_splits, walk_forward
from rl.supervised import NO_LABEL, SupervisedPolicy, prelabels, state_policy, train_supervised
from rl.tabular import (
    BUY,
    HOLD,
    SELL,
    DenseMDP,
    LearnConfig,
    TabularPolicy,
    TradingMDP,
    TradingSpec,
    fit_state_space,
    policy_from_artifact,
    policy_iteration,
    train_policies,
    train_tabular,
    value_iteration,
)

# --- fixtures: a chain MDP and a synthetic market -----------------------------------------------------------

LEFT, RIGHT = 0, 1


def chain_mdp(gamma: float, n: int = 5) -> DenseMDP:
    """States 0..n-1 on a line; LEFT / RIGHT move one step (walls hold). RIGHT at the right end pays 1 (and
    stays); LEFT at the left end pays 0.5 (and stays). Patient agents walk right, impatient ones stay left."""
    P = np.zeros((2, n, n))
    for s in range(n):
        P[LEFT, s, max(s - 1, 0)] = 1.0
        P[RIGHT, s, min(s + 1, n - 1)] = 1.0
    R = np.zeros((n, 2))
    R[n - 1, RIGHT] = 1.0
    R[0, LEFT] = 0.5
    return DenseMDP(P, R, gamma)


def exact_values(mdp: DenseMDP, policy: np.ndarray) -> np.ndarray:
    s = np.arange(mdp.n_states)
    return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * mdp.P[policy, s], mdp.reward[s, policy])


def brute_force_optimum(mdp: DenseMDP) -> tuple[np.ndarray, np.ndarray]:
    """The deterministic policy whose exact values dominate all others (exists for finite discounted MDPs)."""
    best_v, best_pi = None, None
    for pi in itertools.product(range(mdp.n_actions), repeat=mdp.n_states):
        v = exact_values(mdp, np.array(pi))
        if best_v is None or np.all(v >= best_v - 1e-12):
            best_v, best_pi = v, np.array(pi)
    return best_pi, best_v


FEATURES = ("trend", "noise", "momentum")


def synthetic_market(log_returns: np.ndarray, liquidity: float = 1e8) -> PoolMarket:
    """A deep constant-product pool (reserves L / sqrt(mid), L x sqrt(mid)) whose mid follows `log_returns`."""
    n = len(log_returns)
    mid = 2000.0 * np.exp(np.cumsum(log_returns))
    return PoolMarket(pool="0xpool", base_token="0xbase", quote_token="0xquote", base_symbol="WETH",
                      quote_symbol="USDC", base_is_token0=True, fee=0.003, blocks=np.arange(1_000, 1_000 + n),
                      reserve_base=liquidity / np.sqrt(mid), reserve_quote=liquidity * np.sqrt(mid),
                      base_fee_gwei=np.full(n, 1.0), eth_price_quote=mid.copy())


def synthetic_episode(n_rows: int = 400, seed: int = 0, drift: float = 0.002, vol: float = 0.004,
                      stay: float = 0.95, nan_share: float = 0.05) -> Episode:
    """A market whose drift is a persistent hidden regime z = +-1 (it stays with probability `stay` per block):
    block k's log return is drift x z_k + N(0, vol). Decisions at blocks 1..n_rows (stride 1, latency 1: row t
    fills at the end of block b_t). Point-in-time features of row t (they know blocks < b_t):
    trend = z of block b_t - 1 (the regime just seen), noise = N(0, 1) with some NaN, momentum = the 32-block
    log return up to b_t - 1. The regime series is the trend."""
    rng = np.random.default_rng(seed)
    n_blocks = n_rows + 2
    flips = rng.random(n_blocks) > stay
    z = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0)
    market = synthetic_market(drift * z + rng.normal(0.0, vol, n_blocks))
    as_of = market.blocks[1:n_rows + 1]
    idx = as_of - market.blocks[0]
    log_mid = np.log(market.mid)
    trend = z[idx - 1]
    noise = rng.normal(size=n_rows)
    noise[rng.random(n_rows) < nan_share] = np.nan
    momentum = log_mid[idx - 1] - log_mid[np.maximum(idx - 33, 0)]
    return Episode(market, as_of, np.column_stack([trend, noise, momentum]), FEATURES, trend.astype(np.int8), 1)


ENV = EnvConfig(trade_fraction=0.25, max_position_fraction=0.5)


class Hold:
    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), HOLD)


def run_env(episode: Episode, policy, rows: range, config: EnvConfig = ENV) -> tuple[float, np.ndarray, list]:
    """Step `policy` through the env over `rows`; (final value / initial value, observations, actions)."""
    env = TradingEnv(episode, config)
    if hasattr(policy, "begin"):
        policy.begin(env)
    obs, info = env.reset(options={"start": rows.start, "stop": rows.stop})
    start_value, seen, actions, done = info["value"], [], [], False
    while not done:
        a = int(policy.act(obs[None, :])[0])
        seen.append(obs)
        actions.append(a)
        obs, _, terminated, truncated, info = env.step(a)
        done = terminated or truncated
    return info["value"] / start_value, np.array(seen), actions


# --- dynamic programming on MDPs with a known optimal policy ---------------------------------------------------

@pytest.mark.parametrize(("gamma", "expected"), [(0.9, [RIGHT] * 5), (0.5, [LEFT, LEFT, RIGHT, RIGHT, RIGHT])])
def test_policy_and_value_iteration_find_the_known_optimum(gamma, expected):
    mdp = chain_mdp(gamma)
    best_pi, best_v = brute_force_optimum(mdp)
    assert best_pi.tolist() == expected
    pi, vi = policy_iteration(mdp), value_iteration(mdp, tol=1e-12)
    for result in (pi, vi):
        assert result.converged
        assert result.policy.tolist() == expected
        np.testing.assert_allclose(result.values, best_v, atol=1e-9)
    if gamma == 0.9:  # walking right: V*(s) = gamma^(4 - s) / (1 - gamma)
        np.testing.assert_allclose(vi.values, gamma ** (4 - np.arange(5)) / (1 - gamma), atol=1e-9)
    # value iteration contracts by gamma every sweep; policy iteration ends when no action changes
    h = np.array(vi.history)
    assert np.all(h[1:] <= gamma * h[:-1] + 1e-12)
    assert pi.policy_changes[-1] == 0 and pi.iterations == len(pi.policy_changes) <= mdp.n_states + 1
    assert pi.summary()["sweeps"] == len(pi.history) and len(pi.eval_sweeps) == pi.iterations


def test_policy_iteration_from_any_initial_policy_reaches_the_optimum():
    mdp = chain_mdp(0.5)
    for start in ([RIGHT] * 5, [LEFT] * 5, [RIGHT, LEFT, RIGHT, LEFT, RIGHT]):
        assert policy_iteration(mdp, np.array(start)).policy.tolist() == [LEFT, LEFT, RIGHT, RIGHT, RIGHT]


def alternating_market(cost: float, gamma: float = 0.9) -> TradingMDP:
    """Market state 0 (price about to rise: one level earns +1) and 1 (about to fall: -1), alternating."""
    P = np.array([[0.0, 1.0], [1.0, 0.0]])
    return TradingMDP(P, np.array([1.0, -1.0]), cost, levels=2, gamma=gamma, counts=np.ones(2))


def test_trading_mdp_buys_before_rises_and_sells_before_falls():
    mdp = alternating_market(cost=0.1)
    # states m * 2 + level: (up, flat) buy, (up, long) hold, (down, flat) hold, (down, long) sell
    for result in (policy_iteration(mdp, prefer=HOLD), value_iteration(mdp, prefer=HOLD)):
        assert result.policy.tolist() == [BUY, HOLD, HOLD, SELL]
    # the factored model equals its dense twin, and a brute force over all 3^4 policies agrees
    dense = mdp.dense()
    v = np.random.default_rng(0).normal(size=4)
    np.testing.assert_allclose(mdp.expected_next(v), dense.expected_next(v))
    _, best_v = brute_force_optimum(dense)
    np.testing.assert_allclose(value_iteration(mdp, tol=1e-12).values, best_v, atol=1e-8)


def test_trading_mdp_does_not_trade_when_costs_eat_the_edge():
    mdp = alternating_market(cost=3.0)
    assert policy_iteration(mdp, prefer=HOLD).policy.tolist() == [HOLD] * 4
    assert value_iteration(mdp, prefer=HOLD).policy.tolist() == [HOLD] * 4


def test_dense_mdp_rejects_bad_input():
    with pytest.raises(ConfigError):
        DenseMDP(np.full((1, 2, 2), 0.3), np.zeros((2, 1)), 0.9)
    with pytest.raises(ConfigError):
        DenseMDP(np.full((1, 2, 2), 0.5), np.zeros((2, 1)), 1.0)


# --- Q-learning and SARSA converge to the DP solution ----------------------------------------------------------

@pytest.mark.parametrize("gamma", [0.9, 0.5])
def test_q_learning_converges_to_the_dp_solution(gamma):
    mdp = chain_mdp(gamma)
    dp = value_iteration(mdp, tol=1e-12)
    env = MDPEnv(mdp, horizon=20)
    result = q_learning(env, int, mdp.n_states, episodes=400, gamma=gamma, alpha=0.5, epsilon_start=1.0,
                        epsilon_end=0.3, exploration_fraction=0.5, seed=3, prefer=None)
    assert np.argmax(result.q, axis=1).tolist() == dp.policy.tolist()
    np.testing.assert_allclose(result.q, dp.q, atol=1e-3 * np.abs(dp.q).max())
    assert result.visits.min() > 0 and result.steps == 400 * 20
    again = q_learning(env, int, mdp.n_states, episodes=400, gamma=gamma, alpha=0.5, epsilon_start=1.0,
                       epsilon_end=0.3, exploration_fraction=0.5, seed=3, prefer=None)
    np.testing.assert_array_equal(result.q, again.q)  # seeded


def test_vectorized_q_learning_converges_to_the_dp_solution():
    mdp = chain_mdp(0.9)
    dp = value_iteration(mdp, tol=1e-12)
    envs = gymnasium.vector.SyncVectorEnv([lambda: MDPEnv(mdp, horizon=20) for _ in range(4)])
    result = td_control_vector(envs, lambda obs: obs, mdp.n_states, total_steps=8_000, gamma=0.9, alpha=0.5,
                               epsilon_end=0.3, seed=2, prefer=None)
    assert np.argmax(result.q, axis=1).tolist() == dp.policy.tolist()
    np.testing.assert_allclose(result.q, dp.q, atol=1e-3 * np.abs(dp.q).max())
    assert result.steps >= 8_000 and len(result.episode_returns) >= 4 * (8_000 // (4 * 20)) - 4


def test_sarsa_learns_the_dp_policy():
    mdp = chain_mdp(0.5)
    result = sarsa(MDPEnv(mdp, horizon=20), int, mdp.n_states, episodes=600, gamma=0.5, alpha=0.3,
                   epsilon_start=1.0, epsilon_end=0.0, exploration_fraction=0.7, seed=1, prefer=None)
    assert np.argmax(result.q, axis=1).tolist() == value_iteration(mdp).policy.tolist()


def test_initial_q_starts_greedy_at_the_given_policy():
    q = initial_q(np.array([BUY, SELL, HOLD]))
    assert q.argmax(axis=1).tolist() == [BUY, SELL, HOLD]


# --- splits strictly in time --------------------------------------------------------------------------------

def assert_ordered(split: Split, n: int, embargo: int):
    parts = [p for p in (split.train, split.validation, split.test) if len(p)]
    assert len(split.train) and len(split.test)
    for part in parts:
        assert 0 <= part.start < part.stop <= n
    for before, after in itertools.pairwise(parts):
        assert after.start - before.stop >= embargo  # no overlap, and the embargo between


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 5_000), train=st.floats(0.05, 0.9), validation=st.floats(0.0, 0.5),
       embargo=st.integers(0, 200))
def test_time_splits_never_overlap_and_respect_the_embargo(n, train, validation, embargo):
    assume(train + validation < 0.99)
    try:
        split = time_splits(n, train, validation, embargo)
    except ConfigError:
        assert n - 2 * embargo < 1 / min(train, validation or 1, 1 - train - validation) + 1  # only when too short
        return
    assert_ordered(split, n, embargo)
    assert split.train.start == 0 and split.test.stop == n


@settings(max_examples=200, deadline=None)
@given(n=st.integers(10, 3_000), folds=st.integers(1, 6), train_size=st.one_of(st.none(), st.integers(1, 500)),
       test_size=st.integers(1, 300), embargo=st.integers(0, 50), validation_size=st.integers(0, 100))
def test_walk_forward_folds_are_in_time_order_with_embargoes(n, folds, train_size, test_size, embargo,
                                                            validation_size):
    try:
        splits = walk_forward(n, folds, train_size, test_size, embargo, validation_size)
    except ConfigError:
        assume(False)
    assert len(splits) == folds
    for split in splits:
        assert_ordered(split, n, embargo)
        assert len(split.test) == test_size and len(split.validation) == validation_size
        if train_size is not None:
            assert len(split.train) == train_size
    for before, after in itertools.pairwise(splits):
        assert after.test.start == before.test.stop  # rolling: test windows tile the end of the series
        assert after.train.start >= before.train.start
    assert splits[-1].test.stop == n


@settings(max_examples=200, deadline=None)
@given(regime=st.lists(st.sampled_from([-1, 0, 1]), min_size=2, max_size=300), test_size=st.integers(1, 50),
       embargo=st.integers(0, 20), min_run=st.integers(1, 4))
def test_regime_folds_test_from_the_switch_and_train_strictly_before(regime, test_size, embargo, min_run):
    regime = np.array(regime, dtype=np.int8)
    folds = regime_transition_folds(regime, test_size, embargo, min_run=min_run, max_per_kind=None)
    switches = regime_switches(regime, min_run)
    assert [(f.kind, f.switch) for f in folds] == [s for s in switches if s[1] - embargo >= 1]
    for fold in folds:
        new = -1 if fold.kind == "bull_to_bear" else 1
        known_before = regime[:fold.switch][regime[:fold.switch] != 0]
        assert regime[fold.switch] == new and known_before[-1] == -new
        assert fold.split.test.start == fold.switch
        assert fold.split.train.stop + embargo <= fold.switch
        assert_ordered(fold.split, len(regime), embargo)


def test_regime_folds_one_per_kind_on_a_bull_bear_bull_series():
    regime = np.array([1] * 50 + [0] * 3 + [-1] * 50 + [1] * 50, dtype=np.int8)
    folds = regime_transition_folds(regime, test_size=20, embargo=5)
    assert [(f.kind, f.switch) for f in folds] == [("bull_to_bear", 53), ("bear_to_bull", 103)]
    assert folds[0].split.train == range(48) and folds[1].split.test == range(103, 123)
    assert regime_transition_folds(regime, 20, 5, train_size=10)[1].split.train == range(88, 98)


def test_embargo_rows_cover_latency_and_horizon():
    assert embargo_rows(16, stride=1, latency_blocks=1) == 17
    assert embargo_rows(16, stride=4, latency_blocks=1) == 5
    assert embargo_rows(0, stride=1, latency_blocks=0) == 0


# --- the discretizer: bins from the training rows only -----------------------------------------------------------

def test_discretizer_bins_come_from_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    x[rng.random(600) < 0.1, 1] = np.nan
    train = x[:400]
    disc = QuantileDiscretizer([0, "b"], bins=4, feature_names=("a", "b", "c")).fit(train)
    edges = [e.copy() for e in disc.edges]
    np.testing.assert_allclose(edges[0], np.quantile(train[:, 0], [0.25, 0.5, 0.75]))
    np.testing.assert_allclose(edges[1], np.nanquantile(train[:, 1], [0.25, 0.5, 0.75]))
    assert disc.radix.tolist() == [5, 5] and disc.n_states == 25  # 4 bins + the NaN bin, per feature
    wild = x[400:] * 1e6
    wild[::7] = np.nan
    states = disc.transform(wild)
    assert all(np.array_equal(a, b) for a, b in zip(edges, disc.edges))  # transforming never refits
    assert states.min() >= 0 and states.max() < disc.n_states
    digits = disc.digits(wild)
    assert np.all(digits[::7] == 4)  # NaN has its own bin
    assert set(np.unique(digits[np.isfinite(wild[:, 0]), 0])) <= {0, 3}  # far values: the outer bins
    refit = QuantileDiscretizer([0, "b"], bins=4, feature_names=("a", "b", "c")).fit(train)
    assert all(np.array_equal(a, b) for a, b in zip(edges, refit.edges))


def test_changing_test_data_never_changes_bins_nor_the_tabular_policy():
    episode = synthetic_episode(500, seed=4)
    split = time_splits(len(episode), 0.6, 0.2, embargo=2)
    spec = TradingSpec.from_env(ENV, episode, split.train)
    policy, _ = train_tabular(episode, split, spec, ["trend", "momentum"], bins=3, gamma=0.9)
    garbage = episode.features.copy()
    garbage[split.validation.start:] = np.random.default_rng(9).normal(size=garbage[split.validation.start:].shape) * 50
    market = episode.market
    tail = episode.index[split.validation.start]
    scrambled = replace(market, reserve_base=np.r_[market.reserve_base[:tail], market.reserve_base[tail:] * 3],
                        reserve_quote=np.r_[market.reserve_quote[:tail], market.reserve_quote[tail:] / 2])
    other, _ = train_tabular(replace(episode, features=garbage, market=scrambled), split, spec, ["trend", "momentum"],
                             bins=3, gamma=0.9)
    assert all(np.array_equal(a, b) for a, b in zip(policy.space.discretizer.edges, other.space.discretizer.edges))
    np.testing.assert_array_equal(policy.table, other.table)
    np.testing.assert_array_equal(policy.values, other.values)


def test_discretizer_needs_fit_and_known_names():
    with pytest.raises(ConfigError):
        QuantileDiscretizer([0]).transform(np.zeros((2, 1)))
    with pytest.raises(ConfigError):
        QuantileDiscretizer(["missing"], feature_names=("a",)).fit(np.zeros((3, 1)))


def test_state_space_reads_the_position_level_from_the_observation():
    disc = QuantileDiscretizer([0], bins=2).fit(np.array([[0.0], [1.0], [2.0]]))
    space = StateSpace(disc, levels=3, level_share=0.25, n_features=1)
    obs = np.array([[0.0, 0.0, 1.0], [0.0, 0.26, 0.74], [2.0, 0.49, 0.51], [2.0, 0.9, 0.1]])
    assert space.position_level(obs).tolist() == [0, 1, 2, 2]
    market, level = space.split(space.from_obs(obs))
    assert level.tolist() == [0, 1, 2, 2] and market.tolist() == disc.transform(obs[:, :1]).tolist()


# --- supervised pre-labels: future returns inside the horizon and the split only -----------------------------------

HORIZON = 8


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 1_000), horizon=st.integers(1, 30), train=st.floats(0.3, 0.6))
def test_labels_never_cross_the_split_boundary(seed, horizon, train):
    episode = synthetic_episode(300, seed=seed)
    split = time_splits(len(episode), train, 0.2, embargo=embargo_rows(horizon))
    for part in (split.train, split.validation):
        labels = prelabels(episode, part, horizon, 0.0, 1.0)
        last_known = episode.index[part.stop - 1] - 1  # the newest block end the part's last decision knows
        fills = episode.index[part.start:part.stop]
        valid = labels.valid
        assert np.all(fills[valid] + horizon <= last_known)  # every label stays inside its split
        assert np.all(~valid[fills + horizon > last_known])  # and the rows that would cross get none
        following = split.validation if part == split.train else split.test
        if valid.any():  # so no label reads a block the next part's first decision sees
            assert fills[valid].max() + horizon < episode.index[following.start] - 1


def test_labels_read_exactly_the_horizon():
    episode = synthetic_episode(200, seed=1)
    part = range(120)
    base = prelabels(episode, part, HORIZON, 0.001, 1.0)
    assert base.valid.sum() == 120 - HORIZON - 1 and np.all(base.labels[-HORIZON - 1:] == NO_LABEL)
    t = 10
    s = int(episode.index[t])  # latency 1: row t fills at the end of block index s

    def bump(at):
        m = episode.market
        rb, rq = m.reserve_base.copy(), m.reserve_quote.copy()
        rq[at] *= 1.5
        return prelabels(replace(episode, market=replace(m, reserve_base=rb, reserve_quote=rq)), part, HORIZON,
                         0.001, 1.0)

    assert bump(s + HORIZON).future_return[t] != base.future_return[t]  # the horizon's end is read
    for at in (s + HORIZON + 1, s - 1):  # after the horizon, before the fill: not read
        assert bump(at).future_return[t] == base.future_return[t]
    after_split = bump(int(episode.index[part.stop - 1]))  # the last block end the part cannot know
    np.testing.assert_array_equal(after_split.labels, base.labels)
    np.testing.assert_array_equal(after_split.future_return, base.future_return)


def test_labels_follow_the_net_return():
    episode = synthetic_episode(200, seed=2)
    labels = prelabels(episode, range(200), 1, 0.0, 1.0)
    v = labels.valid
    r, c = labels.future_return[v], labels.cost[v]
    assert np.all(c > 0.006) and np.all(c < 0.007)  # 2 x 0.3% pool fee + gas + a little impact
    assert np.array_equal(labels.labels[v] == BUY, r - c > 0) and np.array_equal(labels.labels[v] == SELL, -r - c > 0)
    assert labels.counts()["buy"] > 0 and labels.counts()["sell"] > 0 and labels.counts()["hold"] > 0


def test_supervised_policy_learns_on_train_and_reports_validation():
    episode = synthetic_episode(1000, seed=7)
    split = time_splits(len(episode), 0.6, 0.2, embargo=embargo_rows(HORIZON))
    policy, report = train_supervised(episode, split, HORIZON, threshold=0.0, trade_size=1.0, iterations=800, lr=1.0)
    assert report["validation_accuracy"] > report["validation_hold_baseline"] + 0.2
    assert sum(report["train_labels"].values()) == len(split.train) - HORIZON - 1  # the horizon and the fill
    # the initial tabular policy: the classifier's majority action per market state (trend down: sell, up: buy)
    space = fit_state_space(episode, split.train, ["trend"], 3, TradingSpec(1.0, 1))
    init = state_policy(policy, episode, split.train, space.discretizer, levels=2)
    assert init.shape == (space.n_states,)
    down, up = space.discretizer.transform(np.array([[-1.0, 0, 0], [1.0, 0, 0]]))
    assert init[down * 2] == SELL and init[up * 2] == BUY


# --- the learned policies on the trading env ----------------------------------------------------------------------

class Random:
    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, 3, len(obs))


@pytest.fixture(scope="module")
def trained():
    """Every learner on one synthetic episode (1,000 rows, seed 7), supervised as the initial policy."""
    episode = synthetic_episode(1000, seed=7)
    split = time_splits(len(episode), 0.6, 0.2, embargo=embargo_rows(HORIZON))
    spec = TradingSpec.from_env(ENV, episode, split.train)
    supervised, _ = train_supervised(episode, split, HORIZON, 0.0, spec.trade_size, spec.config, iterations=800,
                                     lr=1.0)
    linear, linear_report = train_linear(episode, split, spec, gamma=0.9)
    space = fit_state_space(episode, split.train, ["trend", "momentum"], 3, spec)
    init = state_policy(supervised, episode, split.train, space.discretizer, spec.levels)
    tabular, tabular_report = train_tabular(episode, split, spec, ["trend", "momentum"], 3, gamma=0.9,
                                            initial_policy=init, fallback=linear)
    q, q_report = train_q(episode, split, space, ENV, episodes=6, gamma=0.9, alpha=0.2, q_init=initial_q(init),
                          seed=0)
    return {"episode": episode, "split": split, "spec": spec, "supervised": supervised, "linear": linear,
            "tabular": tabular, "q": q, "reports": {"linear": linear_report, "tabular": tabular_report, "q": q_report}}


def test_spec_matches_the_env_sizes(trained):
    spec, episode = trained["spec"], trained["episode"]
    env = TradingEnv(episode, ENV)
    _, info = env.reset(options={"start": trained["split"].train.start})
    assert spec.trade_size == pytest.approx(info["trade_size"]) and spec.max_units == 2
    assert spec.level_share == pytest.approx(0.25)


def test_tabular_dp_converges_and_methods_agree(trained):
    report = trained["reports"]["tabular"]
    assert report["policy_iteration"]["converged"] and report["value_iteration"]["converged"]
    assert report["policies_agree"] == 1.0 and report["max_value_gap"] < 1e-6
    assert report["policy_iteration"]["policy_changes"][-1] == 0
    assert trained["reports"]["linear"]["converged"]


@pytest.mark.parametrize("name", ["tabular", "linear", "supervised", "q"])
def test_learned_policies_beat_random_trading_on_test(trained, name):
    episode, split = trained["episode"], trained["split"]
    growth, _, actions = run_env(episode, trained[name], split.test)
    assert len(set(actions)) > 1
    random_growth, _, _ = run_env(episode, Random(), split.test)
    hold, _, _ = run_env(episode, Hold(), split.test)
    assert growth > 1.0 and growth > random_growth + 0.05
    assert hold == pytest.approx(1.0)


def test_tabular_policy_goes_long_in_up_trends_and_flat_in_down_trends(trained):
    policy, space = trained["tabular"], trained["tabular"].space
    n = space.n_features
    obs = np.zeros((6, n + 2), dtype=np.float32)
    obs[:, 0] = [1, 1, 1, -1, -1, -1]  # the trend just seen
    obs[:, n] = [0.0, 0.25, 0.5, 0.0, 0.25, 0.5]  # position share: flat, one level, two levels (the cap)
    obs[:, n + 1] = 1.0 - obs[:, n]
    assert policy.act(obs).tolist() == [BUY, BUY, HOLD, HOLD, SELL, SELL]


def test_policies_round_trip_through_the_policy_store(trained, tmp_path):
    episode, split = trained["episode"], trained["split"]
    _, obs, _ = run_env(episode, trained["tabular"], split.validation)
    probe = np.vstack([obs, np.random.default_rng(0).normal(size=(50, obs.shape[1])).astype(np.float32)])
    for name in ("tabular", "linear", "supervised", "q"):
        policy = trained[name]
        meta, arrays = policy.to_artifact()
        json.dumps(meta)  # meta must be plain JSON
        save_policy(name, meta, arrays, tmp_path)
        loaded = load_policy(name, models_dir=tmp_path)
        back = policy_from_artifact(loaded.meta, loaded.arrays)
        assert type(back) is type(policy)
        np.testing.assert_array_equal(back.act(probe), policy.act(probe))
    assert isinstance(trained["tabular"].fallback, LinearPolicy)
    assert isinstance(policy_from_artifact(*trained["tabular"].to_artifact()).fallback, LinearPolicy)


def test_uncovered_states_use_the_fallback(trained):
    tabular = trained["tabular"]
    never = np.zeros_like(tabular.covered)
    blind = TabularPolicy(tabular.space, np.full_like(tabular.table, HOLD), never, trained["linear"])
    _, obs, _ = run_env(trained["episode"], tabular, trained["split"].validation)
    np.testing.assert_array_equal(blind.act(obs), trained["linear"].act(obs))


def test_q_learning_on_the_env_uses_train_rows_only(trained):
    q, report = trained["q"], trained["reports"]["q"]
    split = trained["split"]
    assert report["episodes"] == 6 and report["steps"] == 6 * (len(split.train) - 1)
    assert isinstance(q, QPolicy) and q.visits.sum() == report["steps"]


def test_policies_check_the_env_they_are_given(trained):
    episode = trained["episode"]
    other = replace(episode, feature_names=("a", "b", "c"))
    for name in ("tabular", "linear", "supervised", "q"):
        with pytest.raises(ConfigError):
            trained[name].begin(TradingEnv(other, ENV))
        with pytest.raises(ConfigError):
            trained[name].begin(TradingEnv(episode, replace(ENV, action_mode="fraction")))
    assert isinstance(trained["supervised"], SupervisedPolicy)


def test_train_policies_runs_every_learner_and_reports_convergence():
    episode = synthetic_episode(600, seed=3)
    split = time_splits(len(episode), 0.6, 0.2, embargo=embargo_rows(HORIZON))
    learn = LearnConfig(state_features=("trend", "momentum"), gamma=0.9, horizon_blocks=HORIZON, q_episodes=2,
                        q_num_envs=4)
    policies, report = train_policies(episode, split, ENV, learn)
    assert set(policies) == {"supervised", "linear", "tabular", "q_learning", "sarsa"}
    json.dumps(report)
    assert report["tabular"]["policy_iteration"]["converged"] and report["linear"]["converged"]
    assert report["supervised"]["validation_accuracy"] is not None
    for method in ("q_learning", "sarsa"):
        assert report[method]["steps"] >= 2 * (len(split.train) - 1)
        assert 0.0 <= report[method]["agreement_with_reference"] <= 1.0
    _, obs, _ = run_env(episode, policies["tabular"], split.test)
    for policy in policies.values():
        assert set(np.unique(policy.act(obs))) <= {SELL, HOLD, BUY}
