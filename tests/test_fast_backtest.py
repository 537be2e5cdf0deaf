"""The compiled signal backtest (`rl.fast_backtest`) against the reference event-driven backtester.

Every case runs both `rl.backtest.backtest(episode, Scripted(signals[start:stop]), config)` and
`fast_backtest(episode, signals, config, start, stop)` and requires the same result to the last bit:
blocks, equity net and gross, position, actions, the trade ledger and every metric. Hand-made markets
cover latency 0 and 1, stride 2, balance-capped, liquidity-capped and gas-unaffordable trades; hypothesis
draws random markets, signals and configs. numba is a dependency: without it this module fails to import
(an error, not a skip).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numba  # noqa: F401  (a dependency: no importorskip, a missing numba must fail the suite)
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_rl_env import draw_book_settings, draw_market, make_episode, make_market, random_episode

from chainlake.errors import ConfigError
from rl import fast_backtest as fb
from rl.backtest import backtest
from rl.baselines import Scripted
from rl.data import Episode
from rl.env import BUY, HOLD, SELL, EnvConfig, VectorTradingEnv
from rl.execution import ExecutionConfig


def assert_same(episode, signals, config, start=None, stop=None):
    """Both backtesters on the same inputs; returns the fast result after checking it equals the reference."""
    lo = 0 if start is None else start
    ref = backtest(episode, Scripted(list(np.asarray(signals)[lo:stop])), config, start, stop, name="signals")
    fast = fb.fast_backtest(episode, signals, config, start, stop, name="signals")
    assert (fast.start_row, fast.stop_row, fast.n_steps) == (ref.start_row, ref.stop_row, ref.n_steps)
    for key in ("blocks", "equity", "equity_gross", "position", "actions"):
        a, b = getattr(fast, key), getattr(ref, key)
        assert a.dtype == b.dtype and a.shape == b.shape, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert fast.ledger.schema == ref.ledger.schema
    assert fast.ledger.equals(ref.ledger), (fast.ledger, ref.ledger)
    assert fast.metrics.keys() == ref.metrics.keys()
    for key, value in ref.metrics.items():
        other = fast.metrics[key]
        assert other == value or (math.isnan(other) and math.isnan(value)), (key, other, value)
    assert fast.config == ref.config and fast.pool == ref.pool
    return fast


# Market A, blocks 100..109: mid about 1000 quote per base, 1000 base of liquidity
RB = [1000.0, 1000.0, 990.0, 1010.0, 1000.0, 1000.0, 995.0, 1005.0, 1000.0, 1002.0]
RQ = [1_000_000.0, 1_010_000.0, 1_000_000.0, 1_020_000.0, 990_000.0, 1_000_000.0, 1_001_000.0, 998_000.0,
      1_003_000.0, 1_000_000.0]
BASE_FEE = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 55.0, 45.0, 35.0, 25.0]
ETH = [2000.0, 2000.0, 2100.0, 2200.0, 2300.0, 2400.0, 2300.0, 2200.0, 2100.0, 2000.0]
SCRIPT = [BUY, BUY, HOLD, SELL, BUY, SELL, SELL, BUY, HOLD]  # one per decision row (blocks 101..109)


def episode_a(stride=1, base_fee=BASE_FEE):
    return make_episode(make_market(RB, RQ, base_fee, ETH), stride)


def signals_for(episode, script=SCRIPT):
    return np.resize(np.asarray(script, dtype=np.int64), len(episode))


@pytest.mark.parametrize("latency", [0, 1])
def test_hand_made_market_latency_0_and_1(latency):
    ep = episode_a()
    config = EnvConfig(initial_quote=10_000.0, trade_size=1.0, max_position=2.0,
                       execution=ExecutionConfig(latency_blocks=latency))
    result = assert_same(ep, signals_for(ep), config)
    assert result.n_steps == 8 and result.ledger.height >= 5
    # the third buy in a row is stopped by max_position (2 base)
    assert result.position.max() == 2.0


@pytest.mark.parametrize("latency", [0, 1, 2])
def test_stride_2(latency):
    ep = episode_a(stride=2)
    config = EnvConfig(trade_fraction=0.4, execution=ExecutionConfig(latency_blocks=latency))
    assert_same(ep, signals_for(ep), config)


def test_balance_capped_buys_spend_exactly_the_cash_left():
    ep = episode_a()
    config = EnvConfig(initial_quote=2_500.0, trade_size=1.0, max_position=10.0)
    result = assert_same(ep, signals_for(ep, [BUY, BUY, BUY, BUY, HOLD]), config)
    buys = result.ledger.get_column("base_delta").to_numpy()
    assert buys[0] == 1.0 and buys[1] == 1.0 and 0 < buys[2] < 1.0  # the third buy: what the cash still buys
    assert result.ledger.height == 3  # the fourth cannot pay its gas: no trade, no gas charged


def test_buy_of_all_the_cash_left_after_gas_still_trades():
    """(q - gas) + gas exceeds q by an ulp for this q: the affordability check's slack lets the buy happen."""
    ep = episode_a()
    quote, gas = 15.734633889149796, 120_000 * (30.0 + 1.0) * 1e-9 * 2000.0  # gas of a swap landing in block 102
    assert (quote - gas) + gas > quote
    config = EnvConfig(initial_quote=quote, trade_size=1.0, max_position=10.0)
    result = assert_same(ep, signals_for(ep, [BUY, HOLD]), config)
    assert result.ledger.height >= 1 and result.ledger.get_column("gas")[0] == gas


def test_liquidity_capped_trades():
    ep = episode_a()
    config = EnvConfig(initial_quote=1e7, trade_size=30.0, max_position=1e4,
                       execution=ExecutionConfig(max_reserve_fraction=0.01))
    result = assert_same(ep, signals_for(ep, [BUY, BUY, SELL, SELL, HOLD]), config)
    deltas = np.abs(result.ledger.get_column("base_delta").to_numpy())
    assert np.all(deltas < 30.0) and np.all(deltas > 0)  # every trade capped by 1% of a reserve


def test_sell_that_cannot_pay_its_gas_does_not_happen():
    ep = episode_a(base_fee=[1e7] * len(RB))  # gas of ~2.4e6 quote: more than a sale of 1 base brings
    config = EnvConfig(initial_quote=0.0, initial_base=1.0, trade_size=1.0, max_position=1.0)
    result = assert_same(ep, signals_for(ep, [SELL]), config)
    assert result.ledger.height == 0 and np.all(result.position == 1.0)


def test_no_fees_window_and_initial_base():
    ep = random_episode(n=120, seed=4)
    signals = np.random.default_rng(9).integers(0, 3, len(ep))
    config = EnvConfig(initial_quote=3_000.0, initial_base=2.0, trade_fraction=0.5, max_position_fraction=1.5,
                       execution=ExecutionConfig(charge_fees=False))
    assert_same(ep, signals, config, start=10, stop=70)
    assert_same(ep, signals, config, start=100)  # to the last usable row
    result = assert_same(ep, signals, replace_execution(config, charge_fees=True))
    assert result.metrics["fees_paid"] > 0 and result.metrics["gas_paid"] > 0


def replace_execution(config, **changes):
    return replace(config, execution=replace(config.execution, **changes))


def test_long_random_run_and_the_kernel_is_compiled():
    ep = random_episode(n=2_000, seed=11)
    signals = np.random.default_rng(1).integers(0, 3, len(ep))
    assert_same(ep, signals, EnvConfig(trade_fraction=0.2))
    assert fb._run.signatures  # numba compiled it (not a pure-Python fallback)
    run = fb.simulate_signals(ep, signals, EnvConfig(trade_fraction=0.2))
    assert run.n_steps == len(run.actions) == len(run.equity) - 1
    assert run.equity[0] == 10_000.0 and np.all(run.position >= 0)  # no shorting
    assert len(run.fill_step) == len(run.base_delta) == np.count_nonzero(run.base_delta) > 0
    assert np.all(np.diff(run.fill_step) > 0) and np.all(run.exec_index == ep.index[run.fill_step] + 1)


def test_invalid_inputs():
    ep = episode_a()
    with pytest.raises(ConfigError):
        fb.fast_backtest(ep, np.ones(3, dtype=np.int64))  # not one signal per row
    with pytest.raises(ValueError):
        fb.fast_backtest(ep, np.full(len(ep), 3))
    with pytest.raises(ConfigError):
        fb.fast_backtest(ep, signals_for(ep), EnvConfig(action_mode="fraction"))
    with pytest.raises(ConfigError):
        fb.fast_backtest(ep, signals_for(ep), start=len(ep))
    with pytest.raises(ConfigError):  # the env's own check: a fill must land by the next decision
        fb.fast_backtest(ep, signals_for(ep), EnvConfig(execution=ExecutionConfig(latency_blocks=2)))


def broken_episodes():
    market = make_market(RB, RQ, BASE_FEE, ETH)
    ep = make_episode(market)
    zero = make_market(RB[:5] + [0.0] + RB[6:], RQ, BASE_FEE, ETH)
    return {
        "no rows": ep.slice(0, 0),
        "first decision at the market's first block": Episode(
            market, market.blocks[:4], np.zeros((4, 2)), ep.feature_names, np.zeros(4, dtype=np.int8), 1),
        "decisions not stepping by the stride": Episode(
            market, np.array([101, 102, 104]), np.zeros((3, 2)), ep.feature_names, np.zeros(3, dtype=np.int8), 1),
        "no usable row": Episode(market, market.blocks[-1:], np.zeros((1, 2)), ep.feature_names,
                                 np.zeros(1, dtype=np.int8), 1),
        "a zero reserve": make_episode(zero),
    }


@pytest.mark.parametrize("case", list(broken_episodes()))
def test_broken_episodes_are_refused_like_the_env_does(case):
    ep = broken_episodes()[case]
    with pytest.raises(ConfigError) as env_error:
        VectorTradingEnv(ep, EnvConfig())
    with pytest.raises(ConfigError) as fast_error:
        fb.fast_backtest(ep, np.ones(len(ep), dtype=np.int64))
    assert str(fast_error.value) == str(env_error.value)


@st.composite
def cases(draw):
    n, market = draw_market(draw, 5)
    stride = draw(st.sampled_from([1, 1, 2]))
    ep = make_episode(market, stride)
    usable = int(np.sum(ep.index + stride <= n - 1))
    if usable < 1:
        stride, ep = 1, make_episode(market, 1)
        usable = int(np.sum(ep.index + 1 <= n - 1))
    signals = np.asarray(draw(st.lists(st.integers(0, 2), min_size=len(ep), max_size=len(ep))), dtype=np.int64)
    config = EnvConfig(**draw_book_settings(draw, stride))
    start = draw(st.integers(0, usable - 1))
    stop = draw(st.one_of(st.none(), st.integers(start + 1, usable + 2)))
    return ep, signals, config, start, stop


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_markets_signals_and_configs(case):
    assert_same(*case)
