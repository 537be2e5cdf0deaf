"""The trading env on hand-computed cases (fees, slippage, gas, latency, liquidity and balance caps, position
limits, limit orders), its Gymnasium conformance, the vector env against the single env, the compiled
"discrete" step against the numpy one (bit for bit), and no look-ahead (both steps).

Markets are small hand-made `PoolMarket`s: nothing here needs a lake or a node.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainlake.errors import ConfigError
from rl.data import Episode
from rl.env import BUY, HOLD, SELL, EnvConfig, TradingEnv, VectorTradingEnv, _discrete_step
from rl.execution import ExecutionConfig, limit_fill_index
from rl.market import PoolMarket

F = 0.003  # pool fee
GAS_UNITS = 120_000
PRIORITY = 1.0

# Market A, blocks 100..105 (rows 0..5): reserves at the end of each block, the block's base fee, ETH price
RB = [1000.0, 1000.0, 990.0, 1010.0, 1000.0, 1000.0]
RQ = [1_000_000.0, 1_010_000.0, 1_000_000.0, 1_020_000.0, 990_000.0, 1_000_000.0]
BASE_FEE = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
ETH = [2000.0, 2000.0, 2100.0, 2200.0, 2300.0, 2400.0]


def make_market(rb, rq, base_fee=None, eth=None, first_block=100, fee=F) -> PoolMarket:
    n = len(rb)
    return PoolMarket(pool="0xpool", base_token="0xbase", quote_token="0xquote", base_symbol="WETH",
                      quote_symbol="USDC", base_is_token0=True, fee=fee,
                      blocks=np.arange(first_block, first_block + n, dtype=np.int64),
                      reserve_base=np.asarray(rb, dtype=np.float64), reserve_quote=np.asarray(rq, dtype=np.float64),
                      base_fee_gwei=np.asarray(base_fee if base_fee is not None else [10.0] * n, dtype=np.float64),
                      eth_price_quote=np.asarray(eth if eth is not None else [2000.0] * n, dtype=np.float64))


def make_episode(market: PoolMarket, stride: int = 1, features: np.ndarray | None = None,
                 names=("mid_price__log_return_1", "other")) -> Episode:
    """Decisions every `stride` blocks from the market's second block (as `rl.data.load_episode` does)."""
    as_of = np.arange(market.blocks[0] + 1, market.blocks[-1] + 1, stride, dtype=np.int64)
    if features is None:
        mid = market.mid
        idx = market.index(as_of)
        prev = np.log(mid[idx - 1] / mid[np.maximum(idx - 2, 0)])
        features = np.stack([prev, np.where(np.arange(len(as_of)) % 3 == 0, np.nan, 0.5)], axis=1)
    return Episode(market, as_of, np.asarray(features, dtype=np.float64), tuple(names),
                   np.zeros(len(as_of), dtype=np.int8), stride)


def market_a() -> PoolMarket:
    return make_market(RB, RQ, BASE_FEE, ETH)


def gas(row_landing: int) -> float:
    """Gas of a swap landing at market row r: base fee of r (+ tip) in ETH, at the ETH price of row r - 1."""
    return GAS_UNITS * (BASE_FEE[row_landing] + PRIORITY) * 1e-9 * ETH[row_landing - 1]


def buy_cost(q, s, fee=F):
    """Quote paid for q base against the reserves of row s (Uniswap V2 getAmountIn, floats)."""
    return RQ[s] * q / ((RB[s] - q) * (1 - fee))


def sell_proceeds(q, s, fee=F):
    return q * (1 - fee) * RQ[s] / (RB[s] + q * (1 - fee))


def mid(s):
    return RQ[s] / RB[s]


def env_a(stride=1, latency=1, **cfg) -> TradingEnv:
    cfg.setdefault("trade_size", 1.0)
    cfg.setdefault("initial_quote", 10_000.0)
    config = EnvConfig(execution=ExecutionConfig(latency_blocks=latency), **cfg)
    return TradingEnv(make_episode(market_a(), stride), config)


# ------------------------------------------------------------------------------------------------ costs
@pytest.mark.parametrize("latency,stride,state,mark", [(0, 1, 0, 1), (1, 1, 1, 1), (1, 2, 1, 2), (2, 2, 2, 2)])
def test_buy_fee_slippage_gas_and_latency(latency, stride, state, mark):
    """Decision at block 101 (row 1): the buy lands in row 1 + latency, against the reserves of the row
    before, pays gas at the landing row's base fee; the step is marked at row 1 + stride - 1."""
    env = env_a(stride, latency)
    obs, info = env.reset(seed=0)
    assert info["value"] == 10_000.0 and obs[-2] == 0.0 and obs[-1] == 1.0
    obs, reward, terminated, truncated, info = env.step(BUY)
    cost = buy_cost(1.0, state)
    g = gas(state + 1)
    assert info["traded"] and info["base_delta"] == pytest.approx(1.0)
    assert info["exec_block"] == 101 + latency and info["decision_block"] == 101
    assert info["mark_block"] == 100 + mark
    assert info["quote_delta"] == pytest.approx(-cost - g, rel=1e-12)
    assert info["gas"] == pytest.approx(g, rel=1e-12)
    assert info["fee"] == pytest.approx(F * cost, rel=1e-12)
    assert info["slippage"] == pytest.approx(cost - mid(state) - F * cost, rel=1e-9)
    assert info["exec_mid"] == pytest.approx(mid(state))
    value = 10_000.0 - cost - g + mid(mark)
    assert info["value"] == pytest.approx(value, rel=1e-12)
    assert reward == pytest.approx(value - 10_000.0, rel=1e-9, abs=1e-9)
    # without fees: the same base bought, no pool fee, no gas
    assert info["value_gross"] == pytest.approx(10_000.0 - buy_cost(1.0, state, fee=0.0) + mid(mark), rel=1e-12)
    # the observation: position and cash as shares of the value at the mark
    assert obs[-2] == pytest.approx(mid(mark) / value, rel=1e-6)
    assert obs[-1] == pytest.approx((10_000.0 - cost - g) / value, rel=1e-6)
    assert not terminated and not truncated


def test_sell_then_reward_is_change_of_marked_value():
    env = env_a()
    env.reset(seed=0)
    _, r0, *_ = env.step(BUY)  # decision 101, lands 102 on row 1
    _, r1, *_, i1 = env.step(SELL)  # decision 102, lands 103 on row 2
    proceeds = sell_proceeds(1.0, 2)
    cash = 10_000.0 - buy_cost(1.0, 1) - gas(2) + proceeds - gas(3)
    assert i1["quote_delta"] == pytest.approx(proceeds - gas(3), rel=1e-12)
    assert i1["fee"] == pytest.approx(F * mid(2), rel=1e-12)  # the sold base valued at the mid
    assert i1["slippage"] == pytest.approx(mid(2) - proceeds - F * mid(2), rel=1e-9)
    assert i1["position"] == pytest.approx(0.0, abs=1e-12)
    assert i1["value"] == pytest.approx(cash, rel=1e-12)
    assert r0 + r1 == pytest.approx(cash - 10_000.0, rel=1e-9)
    gross = 10_000.0 - buy_cost(1.0, 1, 0.0) + sell_proceeds(1.0, 2, 0.0)
    assert i1["value_gross"] == pytest.approx(gross, rel=1e-12)


def test_liquidity_caps_buys_and_sells():
    env = env_a(trade_size=100.0, initial_quote=1_000_000.0)
    env.reset(seed=0)
    *_, info = env.step(BUY)  # 100 base asked, 5% of the 1000 base reserve allowed
    assert info["base_delta"] == pytest.approx(50.0)
    assert info["quote_delta"] == pytest.approx(-buy_cost(50.0, 1) - gas(2), rel=1e-12)

    env = env_a(trade_size=100.0, initial_quote=0.0, initial_base=100.0)
    env.reset(seed=0)
    *_, info = env.step(SELL)  # may take at most 5% of the 1,010,000 quote reserve out
    sold = RB[1] * 50_500.0 / ((RQ[1] - 50_500.0) * (1 - F))
    assert info["base_delta"] == pytest.approx(-sold, rel=1e-12)
    assert info["quote_delta"] == pytest.approx(50_500.0 - gas(2), rel=1e-12)


def test_balance_caps_buys_and_sells():
    env = env_a(initial_quote=500.0)  # 1 base costs ~1014: spend what is left after gas
    env.reset(seed=0)
    *_, info = env.step(BUY)
    budget = 500.0 - gas(2)
    bought = budget * (1 - F) * RB[1] / (RQ[1] + budget * (1 - F))
    assert info["base_delta"] == pytest.approx(bought, rel=1e-12)
    assert info["cash"] == pytest.approx(0.0, abs=1e-9)

    env = env_a(initial_quote=1000.0, initial_base=0.5)  # sell 1, hold 0.5
    env.reset(seed=0)
    *_, info = env.step(SELL)
    assert info["base_delta"] == pytest.approx(-0.5)
    assert info["quote_delta"] == pytest.approx(sell_proceeds(0.5, 1) - gas(2), rel=1e-12)
    *_, info = env.step(SELL)  # nothing left: no trade, no gas
    assert not info["traded"] and info["gas"] == 0.0 and info["quote_delta"] == 0.0


def test_position_limit_and_unaffordable_gas():
    env = env_a(max_position=1.5)
    env.reset(seed=0)
    env.step(BUY)
    *_, info = env.step(BUY)  # only 0.5 of room left, against row 2
    assert info["base_delta"] == pytest.approx(0.5)
    assert info["quote_delta"] == pytest.approx(-buy_cost(0.5, 2) - gas(3), rel=1e-12)
    *_, info = env.step(BUY)
    assert not info["traded"] and info["position"] == pytest.approx(1.5)

    env = env_a(initial_quote=5.0)  # gas is 7.44: the trade does not happen and costs nothing
    env.reset(seed=0)
    _, reward, *_, info = env.step(BUY)
    assert not info["traded"] and info["cash"] == 5.0 and reward == 0.0


def test_default_sizes_follow_the_start_value():
    env = TradingEnv(make_episode(market_a()), EnvConfig(initial_quote=10_000.0))
    _, info = env.reset(seed=0)
    assert info["trade_size"] == pytest.approx(0.25 * 10_000.0 / mid(0))
    assert info["max_position"] == pytest.approx(10_000.0 / mid(0))
    _, info = env.reset(options={"start": 2})  # decision at block 103: marked at row 2
    assert info["trade_size"] == pytest.approx(0.25 * 10_000.0 / mid(2))


def test_fraction_mode():
    env = env_a(action_mode="fraction")
    env.reset(seed=0)
    *_, info = env.step(np.array([0.5], dtype=np.float32))  # half of 10,000 at the known mid 1000 = 5 base
    assert info["base_delta"] == pytest.approx(5.0)
    assert info["quote_delta"] == pytest.approx(-buy_cost(5.0, 1) - gas(2), rel=1e-12)
    *_, info = env.step(np.array([0.005], dtype=np.float32))  # below min_trade_fraction: hold
    assert not info["traded"]
    *_, info = env.step(np.array([-1.0], dtype=np.float32))  # sells everything held, no more
    assert info["base_delta"] == pytest.approx(-5.0)


def test_episode_ends_when_the_next_decision_leaves_the_market():
    env = env_a()  # decisions 101..105; the one at 105 would land at 106, outside: 4 steps
    env.reset(seed=0)
    flags = [env.step(HOLD)[3] for _ in range(4)]
    assert flags == [False, False, False, True]
    with pytest.raises(RuntimeError):
        env.step(HOLD)
    env = env_a(episode_length=2)
    env.reset(seed=0, options={"start": 1})
    assert [env.step(HOLD)[3] for _ in range(2)] == [False, True]


def test_config_checks():
    with pytest.raises(ConfigError):
        env_a(stride=1, latency=2)  # a fill must be settled by the next decision
    with pytest.raises(ConfigError):
        EnvConfig(action_mode="market")
    env = env_a()
    with pytest.raises(ConfigError):
        env.reset(options={"start": 4})  # beyond the usable rows


# ------------------------------------------------------------------------------------------------ limit orders
LIMIT_MIDS = [1000.0, 1000.0, 995.0, 990.0, 985.0, 980.0, 975.0, 990.0, 1000.0, 1000.0, 1000.0, 1000.0]


def limit_env(window=10, latency=1, stride=1) -> TradingEnv:
    market = make_market([1000.0] * 12, [m * 1000.0 for m in LIMIT_MIDS])
    config = EnvConfig(action_mode="limit", initial_quote=10_000.0, limit_window_blocks=window,
                       limit_max_offset=0.02, execution=ExecutionConfig(latency_blocks=latency))
    return TradingEnv(make_episode(market, stride), config)


def test_limit_buy_fills_when_the_price_crosses():
    """Buy 1.25 base (0.125 of 10,000 at 1000) at 985 (offset -0.75 x 2%): its whole price, fee included,
    is mid x 1000 / (998.75 x 0.997); first <= 985 against row 5 (mid 980), so it lands in block 106."""
    env = limit_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,)
    steps = [env.step(np.array([0.125, -0.75], dtype=np.float32))]  # decision 101
    steps += [env.step(np.zeros(2, dtype=np.float32)) for _ in range(5)]  # decisions 102..106 keep the order
    traded = [s[4]["traded"] for s in steps]
    assert traded == [False, False, False, False, True, False]
    info = steps[4][4]
    assert info["decision_block"] == 105 and info["exec_block"] == 106
    assert info["base_delta"] == 1.25
    assert info["quote_delta"] == pytest.approx(-980_000.0 * 1.25 / (998.75 * (1 - F)) - GAS_UNITS * 11e-9 * 2000.0,
                                                rel=1e-12)
    assert steps[0][0][-1] == pytest.approx(0.125)  # order share while pending
    assert steps[4][0][-1] == 0.0 and not steps[4][4]["order_pending"]
    market = env.market
    assert limit_fill_index(market, 2, +1, 985.0, 1.25, 10, ExecutionConfig()) == 6


def test_limit_order_is_cancelled_after_its_window_and_replaced_by_a_new_one():
    env = limit_env(window=4)  # can land in rows 2..5 only: against rows 1..4, never at or below 985
    env.reset(seed=0)
    infos = [env.step(np.array([0.125, -0.75], dtype=np.float32))[4]]
    infos += [env.step(np.zeros(2, dtype=np.float32))[4] for _ in range(6)]
    assert not any(i["traded"] for i in infos)
    assert [i["order_pending"] for i in infos] == [True, True, True, False, False, False, False]

    env = limit_env()  # replaced at decision 102 by a buy at 980: fills against row 6 (975), in block 107
    env.reset(seed=0)
    env.step(np.array([0.125, -0.75], dtype=np.float32))
    infos = [env.step(np.array([0.125, -1.0], dtype=np.float32))[4]]
    infos += [env.step(np.zeros(2, dtype=np.float32))[4] for _ in range(5)]
    assert [i["exec_block"] for i in infos if i["traded"]] == [107]


def test_limit_fills_match_limit_fill_index_on_random_markets():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = 40
        mids = 1000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        rb = 1000.0 * np.exp(rng.normal(0, 0.05, n))
        market = make_market(rb, rb * mids)
        latency, stride, window = int(rng.integers(1, 3)), 2, int(rng.integers(1, 9))
        config = EnvConfig(action_mode="limit", initial_quote=10_000.0, initial_base=20.0, limit_window_blocks=window,
                           execution=ExecutionConfig(latency_blocks=latency), max_position=1e9)
        env = TradingEnv(make_episode(market, stride), config)
        start = int(rng.integers(0, 5))
        env.reset(options={"start": start})
        size, offset = float(rng.choice([-0.125, 0.125])), float(np.float32(rng.uniform(-1, 1)))
        decision_row = 1 + 2 * start
        known_mid = market.mid[decision_row - 1]
        value = 10_000.0 + 20.0 * known_mid
        qty = abs(size) * value / known_mid
        expected = limit_fill_index(market, decision_row + latency, 1 if size > 0 else -1,
                                    known_mid * (1 + offset * 0.02), qty, window, ExecutionConfig())
        fills = [env.step(np.array([size, offset], dtype=np.float32))[4]]
        while len(fills) * 2 < window + 4 and not env._vec.done[0]:
            fills.append(env.step(np.zeros(2, dtype=np.float32))[4])
        got = [f["exec_block"] for f in fills if f["traded"]]
        if expected is None or market.blocks[expected] > fills[-1]["mark_block"] + 1:
            assert got == [], trial
        else:
            assert got == [int(market.blocks[expected])], trial


# ------------------------------------------------------------------------------------------------ gymnasium
def random_market(n=80, seed=0) -> PoolMarket:
    rng = np.random.default_rng(seed)
    mids = 2000.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    rb = 500.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return make_market(rb, rb * mids, rng.uniform(1, 50, n), 2000.0 * np.exp(rng.normal(0, 0.01, n)))


def random_episode(n=80, seed=0, stride=1) -> Episode:
    market = random_market(n, seed)
    rows = len(range(101, 100 + n, stride))
    feats = np.random.default_rng(seed + 1).normal(size=(rows, 3))
    feats[::7, 1] = np.nan
    return make_episode(market, stride, feats, ("mid_price__log_return_8", "b", "c"))


@pytest.mark.parametrize("mode", ["discrete", "fraction", "limit"])
def test_gymnasium_check_env(mode):
    env = TradingEnv(random_episode(), EnvConfig(action_mode=mode, random_start=True, episode_length=20))
    with pytest.warns(UserWarning):  # only the unbounded Box warnings: features have no natural bounds
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=5)
    assert env.observation_space.contains(obs)
    assert env.obs_names[-2:] == (("position_share", "cash_share") if mode != "limit" else ("cash_share", "order_share"))


@pytest.mark.parametrize("mode", ["discrete", "fraction", "limit"])
def test_vector_env_matches_single_envs(mode):
    ep = random_episode(stride=2)
    config = EnvConfig(action_mode=mode, execution=ExecutionConfig(latency_blocks=2), initial_base=1.0)
    starts = np.array([0, 3, 10, 20])
    venv = VectorTradingEnv(ep, config, num_envs=4, autoreset=False)
    obs, _ = venv.reset(options={"start": starts, "stop": starts + 12})
    venv.action_space.seed(1)
    actions = [venv.action_space.sample() for _ in range(12)]
    rewards, values = [], []
    for a in actions:
        obs, r, _, _, info = venv.step(a)
        rewards.append(r)
        values.append(info["value_gross"])
    assert venv.done.all()
    for i, s in enumerate(starts):
        env = TradingEnv(ep, config)
        o, _ = env.reset(options={"start": int(s), "stop": int(s) + 12})
        for k, a in enumerate(actions):
            o, r, _, tr, info = env.step(a[i])
            assert r == pytest.approx(rewards[k][i], rel=1e-12, abs=1e-12)
            assert info["value_gross"] == pytest.approx(values[k][i], rel=1e-12)
        assert tr
        np.testing.assert_allclose(o, obs[i], rtol=1e-6)


def test_vector_env_over_several_episodes():
    eps = [random_episode(seed=s) for s in (0, 1, 2)]
    venv = VectorTradingEnv(eps, EnvConfig(), num_envs=6, autoreset=False)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (6, 5)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, size=(30, 6))
    got = np.stack([venv.step(a)[1] for a in actions])
    for i in range(6):
        env = TradingEnv(eps[i % 3], EnvConfig())
        env.reset(seed=0)
        expected = [env.step(int(a))[1] for a in actions[:, i]]
        np.testing.assert_allclose(got[:, i], expected, rtol=1e-12, atol=1e-12)


def test_vector_env_autoresets_on_the_next_step():
    venv = VectorTradingEnv(random_episode(), EnvConfig(episode_length=2, random_start=True), num_envs=3)
    assert venv.metadata["autoreset_mode"].value == "NextStep"
    obs, _ = venv.reset(seed=4)
    venv.step(np.full(3, BUY))
    _, _, te, tr, _ = venv.step(np.full(3, BUY))
    assert tr.all() and not te.any()
    obs, r, te, tr, info = venv.step(np.full(3, BUY))  # the reset step: no trade, reward 0, fresh book
    assert (r == 0).all() and not (te | tr).any() and not info["traded"].any()
    np.testing.assert_array_equal(obs[:, -2:], np.tile([0.0, 1.0], (3, 1)))
    _, r, *_ = venv.step(np.full(3, BUY))
    assert (r != 0).all()


def test_vector_env_steps_are_fast():
    import time

    venv = VectorTradingEnv(random_episode(n=400), EnvConfig(random_start=True, episode_length=100), num_envs=256)
    venv.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, size=(200, 256))
    assert venv.compiled
    venv.step(actions[0])  # numba: load (or compile) the step kernel before timing
    t0 = time.perf_counter()
    for a in actions:
        venv.step(a)
    assert 200 * 256 / (time.perf_counter() - t0) > 500_000  # ~8M/s here (numpy step: ~2M/s); a loose floor


# ------------------------------------------------------------------------------------------------ compiled step
# `VectorTradingEnv(..., compiled=True)` (the default) steps "discrete" mode with the numba kernel
# `rl.env._discrete_step`; compiled=False forces the numpy step, the reference. The two must agree to the last
# bit: every returned array (same dtype, shape and bytes: NaNs and the sign of zeros included), the info
# dict (same keys, same order) and the env's state after every step.

STATE = ("_row", "_stop", "_cap", "_feat_cap", "_mark", "_steps", "_quote", "_base", "_quote_gross", "_value",
         "_value_gross", "_trade_size", "_max_pos", "_o_qty", "_terminated", "_truncated")


def assert_identical(got, expected, what):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (what, got.dtype, expected.dtype)
    assert got.tobytes() == expected.tobytes(), (what, got, expected)


def assert_same_output(got, expected, t):
    for k, name in enumerate(("obs", "reward", "terminated", "truncated")):
        assert_identical(got[k], expected[k], (t, name))
    assert list(got[4]) == list(expected[4]), t
    for key in expected[4]:
        assert_identical(got[4][key], expected[4][key], (t, key))


def lockstep(episodes, config, num_envs, actions, autoreset=True, seed=0, options=None, tamper=None):
    """Run the compiled and the numpy env side by side on the same actions, comparing everything at every step.
    `tamper(env, t)`, applied to both before step t, may force a state (e.g. wipe a book out). Returns the
    compiled env and its step results."""
    fast, ref = (VectorTradingEnv(episodes, config, num_envs=num_envs, autoreset=autoreset, compiled=c)
                 for c in (True, False))
    assert fast.compiled and not ref.compiled
    got, expected = fast.reset(seed=seed, options=options), ref.reset(seed=seed, options=options)
    assert_identical(got[0], expected[0], "reset obs")
    results = []
    for t, a in enumerate(actions):
        if tamper is not None:
            tamper(fast, t)
            tamper(ref, t)
        got, expected = fast.step(a), ref.step(a)
        assert_same_output(got, expected, t)
        for name in STATE:
            assert_identical(getattr(fast, name), getattr(ref, name), (t, name))
        results.append(got)
    return fast, results


HAND_CONFIGS = {
    "plain": {},
    "liquidity capped": {"trade_size": 100.0, "initial_quote": 1_000_000.0},
    "balance capped": {"initial_quote": 500.0},
    "gas unaffordable": {"initial_quote": 5.0},
    "all the cash left after gas (ulp edge)": {"initial_quote": 15.734633889149796},
    "position limit, base held, scaled reward": {"max_position": 1.5, "initial_base": 0.7, "reward_scale": 1e-3},
    "no fees": {"initial_base": 2.0, "fees": False},
    "sized from the start value": {"trade_size": None, "trade_fraction": 0.6},
}


@pytest.mark.parametrize("case", list(HAND_CONFIGS))
@pytest.mark.parametrize("latency,stride", [(0, 1), (1, 1), (0, 2), (1, 2), (2, 2)])
def test_compiled_step_equals_numpy_step_on_the_hand_made_market(case, latency, stride):
    cfg = dict(HAND_CONFIGS[case])
    cfg.setdefault("trade_size", 1.0)
    cfg.setdefault("initial_quote", 10_000.0)
    execution = ExecutionConfig(latency_blocks=latency, charge_fees=cfg.pop("fees", True))
    config = EnvConfig(execution=execution, **cfg)
    # market A, then market A backwards: blocks 100..111
    ep = make_episode(make_market(RB + RB[::-1], RQ + RQ[::-1], BASE_FEE + BASE_FEE[::-1], ETH + ETH[::-1]), stride)
    usable = int(np.sum(ep.index + stride <= len(ep.market.blocks) - 1))
    script = [BUY, BUY, SELL, BUY, HOLD, SELL, SELL, BUY]
    # three books from different rows, autoreset on: they finish and restart at different steps
    _, results = lockstep(ep, config, 3, [np.roll(script, k)[:3] for k in range(16)],
                          options={"start": np.minimum([0, 2, 5], usable - 1)})
    assert any(info["traded"].any() for *_, info in results) or case == "gas unaffordable"


def test_compiled_step_hits_the_caps_it_is_compared_on():
    """The hand-made cases above do reach the branches they are named after (checked on the compiled env)."""
    def first_fill(**cfg):
        cfg.setdefault("trade_size", 1.0)
        env = VectorTradingEnv(make_episode(market_a()), EnvConfig(**cfg), num_envs=1)
        env.reset(seed=0)
        return env.step(np.array([BUY]))[4]

    assert first_fill(trade_size=100.0, initial_quote=1_000_000.0)["base_delta"][0] == pytest.approx(50.0)
    assert 0 < first_fill(initial_quote=500.0)["base_delta"][0] < 1.0
    assert not first_fill(initial_quote=5.0)["traded"][0]
    quote = 15.734633889149796
    assert (quote - gas(2)) + gas(2) > quote  # the affordability check needs its slack here
    assert first_fill(initial_quote=quote)["traded"][0]


def test_compiled_step_autoresets_like_the_numpy_step():
    rng = np.random.default_rng(5)
    ep = random_episode(n=80, seed=3, stride=2)
    config = EnvConfig(episode_length=3, random_start=True, initial_base=0.5,
                       execution=ExecutionConfig(latency_blocks=1))
    _, results = lockstep(ep, config, 5, rng.integers(0, 3, size=(40, 5)), seed=9)
    assert sum(int(info["stepped"].sum()) for *_, info in results) < 40 * 5  # reset steps (books not stepped)


def test_compiled_step_over_several_episodes_and_after_the_end_without_autoreset():
    eps = [random_episode(seed=s) for s in (0, 1, 2)]
    rng = np.random.default_rng(0)
    lockstep(eps, EnvConfig(episode_length=7, random_start=True), 6, rng.integers(0, 3, size=(30, 6)), seed=1)
    # no autoreset: finished books stand still while the others go on, then all stand still
    fast, results = lockstep(eps, EnvConfig(), 3, rng.integers(0, 3, size=(20, 3)), autoreset=False,
                             options={"start": [0, 60, 70], "stop": [8, 66, 75]})
    assert fast.done.all() and not results[-1][4]["stepped"].any()


def test_compiled_step_terminates_and_resets_a_wiped_out_book_like_the_numpy_step():
    """A book whose value is no longer positive (forced here: negative cash, or NaN) terminates; with autoreset
    it restarts on the next step. NaN values flow into the rewards and observations the same way."""
    def tamper(env, t):
        if t == 2:
            env._quote[1] = -1e9
            env._quote[3] = np.nan
    fast, results = lockstep(random_episode(), EnvConfig(initial_base=1.0), 4, np.full((6, 4), BUY), tamper=tamper)
    _, reward, terminated, _, _ = results[2]
    assert terminated.tolist() == [False, True, False, True] and reward[1] < 0 and np.isnan(reward[3])
    assert np.isnan(results[2][0][3, -2:]).any()  # the NaN book's observation
    _, reward, terminated, _, info = results[3]  # the reset step of books 1 and 3
    assert info["stepped"].tolist() == [True, False, True, False] and reward[1] == reward[3] == 0.0
    assert fast._steps.tolist() == [6, 2, 6, 2]


def test_compiled_step_refuses_bad_actions_without_changing_anything():
    env = VectorTradingEnv(random_episode(), EnvConfig(), num_envs=3)
    env.reset(seed=0)
    before = {name: getattr(env, name).copy() for name in STATE}
    with pytest.raises(ValueError):
        env.step(np.array([0, 3, 1]))
    for name in STATE:
        np.testing.assert_array_equal(getattr(env, name), before[name])
    # actions of another dtype or layout are converted as the numpy step does (float actions truncate), and
    # the kernel keeps one compiled signature
    read_only = np.array([2, 2, 0])
    read_only.flags.writeable = False
    lockstep(random_episode(), EnvConfig(), 3, [np.array([2.0, 0.0, 1.0]), [[2], [2], [0]],
                                                np.array([[1, 2], [0, 0], [2, 1]])[:, 0], read_only])
    assert len(_discrete_step.signatures) == 1


def test_compiled_flag():
    ep = random_episode()
    assert VectorTradingEnv(ep, EnvConfig()).compiled and TradingEnv(ep, EnvConfig())._vec.compiled
    assert not VectorTradingEnv(ep, EnvConfig(), compiled=False).compiled
    for mode in ("fraction", "limit"):  # numpy only
        assert not VectorTradingEnv(ep, EnvConfig(action_mode=mode)).compiled


def draw_market(draw, min_blocks: int):
    """A random market (prices, depth, base fees, ETH prices, pool fee) of min_blocks..40 blocks, from deep
    to shallow pools, so that liquidity, balance and gas caps all bind in some cases."""
    n = draw(st.integers(min_blocks, 40))
    steps = draw(st.lists(st.floats(-0.15, 0.15), min_size=n, max_size=n))
    depth = draw(st.lists(st.floats(0.5, 2.0), min_size=n, max_size=n))
    liquidity = draw(st.sampled_from([5.0, 200.0, 1e5]))
    mid = 50.0 * np.exp(np.cumsum(steps))
    scale = liquidity * np.asarray(depth)
    return n, make_market(scale / np.sqrt(mid), scale * np.sqrt(mid),
                          draw(st.lists(st.floats(0.0, 500.0), min_size=n, max_size=n)),
                          draw(st.lists(st.floats(1.0, 5_000.0), min_size=n, max_size=n)),
                          fee=draw(st.sampled_from([0.003, 0.0005, 0.01])))


def draw_book_settings(draw, stride: int) -> dict:
    """Random capital, sizes, limits and execution costs (EnvConfig keywords), from none to plenty, so that
    the balance, position, liquidity and gas caps all bind in some cases."""
    initial_quote = draw(st.sampled_from([0.0, 1.0, 100.0, 5_000.0, 1e6]))
    initial_base = draw(st.sampled_from([0.0, 0.5, 20.0])) if initial_quote > 0 else draw(st.sampled_from([0.5, 20.0]))
    return dict(
        initial_quote=initial_quote, initial_base=initial_base,
        trade_size=draw(st.one_of(st.none(), st.floats(0.01, 50.0))), trade_fraction=draw(st.floats(0.05, 1.0)),
        max_position=draw(st.one_of(st.none(), st.floats(0.0, 100.0))),
        max_position_fraction=draw(st.floats(0.0, 2.0)),
        execution=ExecutionConfig(latency_blocks=draw(st.integers(0, stride)),
                                  gas_units=draw(st.sampled_from([0, 21_000, 120_000, 10_000_000])),
                                  priority_fee_gwei=draw(st.sampled_from([0.0, 1.0, 50.0])),
                                  max_reserve_fraction=draw(st.sampled_from([0.001, 0.05, 0.5])),
                                  charge_fees=draw(st.booleans())))


@st.composite
def lockstep_cases(draw):
    """A random market (`draw_market`), stride, latency, config, books and actions."""
    n, market = draw_market(draw, 6)
    stride = draw(st.sampled_from([1, 1, 2]))
    if n - 2 < stride:
        stride = 1
    rows = len(range(101, 100 + n, stride))
    features = np.asarray(draw(st.lists(st.floats(-5, 5) | st.just(float("nan")),
                                        min_size=rows * 2, max_size=rows * 2))).reshape(rows, 2)
    ep = make_episode(market, stride, features)
    config = EnvConfig(**draw_book_settings(draw, stride), reward_scale=draw(st.sampled_from([1.0, 0.01])),
                       episode_length=draw(st.one_of(st.none(), st.integers(1, 6))), random_start=draw(st.booleans()))
    num_envs = draw(st.integers(1, 5))
    n_steps = draw(st.integers(1, 25))
    actions = np.asarray(draw(st.lists(st.integers(0, 2), min_size=n_steps * num_envs,
                                       max_size=n_steps * num_envs))).reshape(n_steps, num_envs)
    return ep, config, num_envs, actions, draw(st.booleans()), draw(st.integers(0, 2**16))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lockstep_cases())
def test_compiled_step_equals_numpy_step_on_random_markets(case):
    ep, config, num_envs, actions, autoreset, seed = case
    lockstep(ep, config, num_envs, actions, autoreset=autoreset, seed=seed)
    assert _discrete_step.signatures  # numba compiled it (not a pure-Python fallback)


# ------------------------------------------------------------------------------------------------ no look-ahead
def _policy_run(ep: Episode, mode: str, latency: int, compiled: bool = True):
    """A deterministic policy of the observation; returns (actions, rewards, values_gross, fills, observations)."""
    config = EnvConfig(action_mode=mode, initial_base=2.0, execution=ExecutionConfig(latency_blocks=latency),
                       limit_window_blocks=5)
    env = TradingEnv(ep, config, compiled=compiled)
    assert env._vec.compiled == (compiled and mode == "discrete")
    pos = env.obs_names.index("position_share")
    obs, _ = env.reset(seed=0)
    acts, rewards, gross, fills, seen = [], [], [], [], []
    done = False
    while not done:
        seen.append(obs)
        score = float(obs[0] + 0.5 * obs[1] - obs[pos] + 0.2)
        if mode == "discrete":
            a = BUY if score > 0.3 else SELL if score < -0.3 else HOLD
        elif mode == "fraction":
            a = np.array([np.tanh(score)], dtype=np.float32)
        else:
            a = np.array([0.2 * np.sign(score), np.tanh(obs[2])], dtype=np.float32)
        obs, r, te, tr, info = env.step(a)
        acts.append(np.asarray(a).tolist())
        rewards.append(r)
        gross.append(info["value_gross"])
        fills.append((info["exec_block"], info["base_delta"], info["quote_delta"]))
        done = te or tr
    return acts, np.array(rewards), np.array(gross), fills, np.array(seen)


@pytest.mark.parametrize("mode,latency,stride,compiled", [
    ("discrete", 1, 1, True), ("discrete", 1, 1, False), ("discrete", 0, 2, True), ("discrete", 2, 3, True),
    ("discrete", 2, 3, False), ("fraction", 0, 1, False), ("limit", 1, 1, False), ("limit", 2, 2, False),
    ("limit", 0, 3, False)])
def test_future_rows_do_not_change_past_decisions_or_rewards(mode, latency, stride, compiled):
    """Shuffle and rescale (price up or down) the market rows decision k cannot know, redraw the features
    after row k: the observations and decisions up to k, the rewards of the steps before k, and with
    latency 0 the market order of step k too (it executes on known state), stay bit for bit. "discrete" runs
    on the compiled step and on the numpy one; the other modes have only the numpy step."""
    ep = random_episode(n=90, seed=7, stride=stride)
    acts, rewards, gross, fills, seen = _policy_run(ep, mode, latency, compiled)
    rng = np.random.default_rng(11)
    m = ep.market
    for k in range(1, len(acts) - 1, 3):
        scale = 0.5 if k % 2 else 2.0
        cut = int(ep.index[k])  # decision k knows market rows < cut
        perm = cut + rng.permutation(len(m.blocks) - cut)
        rb, rq = m.reserve_base.copy(), m.reserve_quote.copy()
        rb[cut:], rq[cut:] = rb[perm], rq[perm] * scale
        eth = m.eth_price_quote.copy()
        eth[cut:] = rng.uniform(100, 5000, len(eth) - cut)
        base_fee = m.base_fee_gwei.copy()  # block r's base fee is set by block r - 1: known at the end of r - 1
        base_fee[cut + 1:] = rng.uniform(100, 500, len(base_fee) - cut - 1)
        feats = ep.features.copy()
        feats[k + 1:] = rng.normal(size=feats[k + 1:].shape) * 10
        market = PoolMarket(**{**m.__dict__, "reserve_base": rb, "reserve_quote": rq, "eth_price_quote": eth,
                               "base_fee_gwei": base_fee})
        perturbed = Episode(market, ep.as_of, feats, ep.feature_names, ep.regime, ep.stride)
        acts2, rewards2, gross2, fills2, seen2 = _policy_run(perturbed, mode, latency, compiled)
        np.testing.assert_array_equal(seen2[:k + 1], seen[:k + 1])
        assert acts2[:k + 1] == acts[:k + 1]
        np.testing.assert_array_equal(rewards2[:k], rewards[:k])  # steps 0..k-1 are marked at rows < cut
        np.testing.assert_array_equal(gross2[:k], gross[:k])
        settled = k + (latency == 0 and mode != "limit")  # a limit order may still fill on later blocks
        assert fills2[:settled] == fills[:settled]
        assert not np.array_equal(rewards2, rewards)  # the perturbation does matter later on
