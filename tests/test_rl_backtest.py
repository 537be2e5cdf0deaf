"""The backtester against a hand-computed ledger, the metrics against hand-computed formulas, baselines,
the comparison table and the report. Hand-made markets only, plus one optional run on the demo lake.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from test_rl_env import make_episode, make_market, random_episode

from rl import backtest as bt
from rl.baselines import (
    AlwaysHold,
    BuyAndHold,
    Momentum,
    RandomPolicy,
    Scripted,
    baselines,
)
from rl.env import BUY, HOLD, SELL, EnvConfig
from rl.metrics import METRIC_NAMES, compute_metrics, hit_rate, periods_per_year
from rl.report import equity_png, markdown_table

F = 0.003
# Market B, blocks 200..207 (rows 0..7)
RB = [100.0, 100.0, 101.0, 99.0, 100.0, 98.0, 100.0, 100.0]
RQ = [200_000.0, 202_000.0, 200_000.0, 199_000.0, 204_000.0, 196_000.0, 201_000.0, 200_000.0]
BASE_FEE = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
ETH = [2000.0, 2010.0, 2020.0, 2030.0, 2040.0, 2050.0, 2060.0, 2070.0]


def episode_b():
    return make_episode(make_market(RB, RQ, BASE_FEE, ETH, first_block=200))


def hand_ledger(script, initial_quote=5000.0):
    """The scripted run by hand: decision at block 201 + t (row 1 + t) lands at row 2 + t against row 1 + t,
    pays gas at row 2 + t's base fee at row 1 + t's ETH price, and is marked at row 1 + t."""
    cash, gross_cash, pos = initial_quote, initial_quote, 0.0
    equity, gross, ledger = [initial_quote], [initial_quote], []
    for t, action in enumerate(script):
        s = 1 + t
        mid = RQ[s] / RB[s]
        gas = 120_000 * (BASE_FEE[s + 1] + 1.0) * 1e-9 * ETH[s]
        if action == BUY:
            cost = RQ[s] / ((RB[s] - 1.0) * (1 - F))
            cash -= cost + gas
            gross_cash -= RQ[s] / (RB[s] - 1.0)
            pos += 1.0
            fee = F * cost
            ledger.append({"decision_block": 201 + t, "block": 202 + t, "side": "buy", "base_delta": 1.0,
                           "quote_delta": -cost - gas, "exec_price": cost, "mid": mid, "fee": fee, "gas": gas,
                           "slippage": cost - mid - fee})
        elif action == SELL:
            proceeds = (1 - F) * RQ[s] / (RB[s] + (1 - F))
            cash += proceeds - gas
            gross_cash += RQ[s] / (RB[s] + 1.0)
            pos -= 1.0
            fee = F * mid
            ledger.append({"decision_block": 201 + t, "block": 202 + t, "side": "sell", "base_delta": -1.0,
                           "quote_delta": proceeds - gas, "exec_price": proceeds, "mid": mid, "fee": fee, "gas": gas,
                           "slippage": mid - proceeds - fee})
        equity.append(cash + pos * mid)
        gross.append(gross_cash + pos * mid)
    return pl.DataFrame(ledger, schema=bt.LEDGER_SCHEMA), np.array(equity), np.array(gross)


SCRIPT = [BUY, BUY, HOLD, SELL, SELL, BUY]
CONFIG = EnvConfig(initial_quote=5000.0, trade_size=1.0, max_position=10.0)


def test_scripted_backtest_equals_the_hand_ledger():
    result = bt.backtest(episode_b(), Scripted(SCRIPT), CONFIG, name="scripted")
    ledger, equity, gross = hand_ledger(SCRIPT)
    assert result.n_steps == 6 and result.blocks.tolist() == list(range(201, 208))
    assert result.ledger.schema == ledger.schema and result.ledger.height == 5
    assert result.ledger.get_column("side").to_list() == ledger.get_column("side").to_list()
    for col in ("decision_block", "block"):
        assert result.ledger.get_column(col).to_list() == ledger.get_column(col).to_list()
    for col in ("base_delta", "quote_delta", "exec_price", "mid", "fee", "gas", "slippage"):
        np.testing.assert_allclose(result.ledger.get_column(col).to_numpy(), ledger.get_column(col).to_numpy(),
                                   rtol=1e-10, err_msg=col)
    np.testing.assert_allclose(result.equity, equity, rtol=1e-12)
    np.testing.assert_allclose(result.equity_gross, gross, rtol=1e-12)
    np.testing.assert_allclose(result.position, [0, 1, 2, 2, 1, 0, 1], atol=1e-12)
    m = result.metrics
    assert m["pnl_net"] == pytest.approx(equity[-1] - 5000.0, rel=1e-10)
    assert m["pnl_gross"] == pytest.approx(gross[-1] - 5000.0, rel=1e-10)
    assert m["fees_paid"] == pytest.approx(ledger.get_column("fee").sum(), rel=1e-12)
    assert m["gas_paid"] == pytest.approx(ledger.get_column("gas").sum(), rel=1e-12)
    assert m["slippage_paid"] == pytest.approx(ledger.get_column("slippage").sum(), rel=1e-10)
    assert m["n_trades"] == 5
    # average cost of the two buys (gas included) against each sell's net proceeds
    buys = -ledger.get_column("quote_delta")[:2].sum() / 2
    sells = ledger.get_column("quote_delta")[2:4].to_list()
    assert m["hit_rate"] == pytest.approx(np.mean([p > buys for p in sells]))
    volume = (ledger.get_column("quote_delta") + ledger.get_column("gas")).abs().sum()
    assert m["turnover"] == pytest.approx(volume / equity.mean(), rel=1e-12)
    assert m["total_return"] == pytest.approx(equity[-1] / 5000.0 - 1, rel=1e-10)


def test_side_by_side_runs_equal_solo_runs():
    ep = random_episode(n=60, seed=2)
    config = EnvConfig(initial_quote=50_000.0)
    policies = {"bh": BuyAndHold(), "hold": AlwaysHold(), "rand": RandomPolicy(4), "mom": Momentum(threshold=0.2)}
    together = bt.run_policies(ep, policies, config, start=5, stop=40)
    for name, policy in policies.items():
        alone = bt.backtest(ep, policy, config, start=5, stop=40, name=name)
        np.testing.assert_array_equal(together[name].equity, alone.equity)
        assert together[name].ledger.equals(alone.ledger)
        assert together[name].metrics == pytest.approx(alone.metrics, nan_ok=True)
    assert together["hold"].metrics["pnl_net"] == 0 and together["hold"].ledger.height == 0
    assert together["bh"].n_steps == 35 and together["bh"].blocks[0] == ep.as_of[5]


def test_baselines_behave():
    ep = random_episode(n=60, seed=2)
    config = EnvConfig(initial_quote=50_000.0)
    results = bt.run_policies(ep, baselines(momentum_feature="mid_price__log_return_8"), config)
    bh = results["buy_and_hold"]
    # buys trade_size (a quarter of the start value) until max_position (all of it) or the cash runs out
    assert bh.ledger.height == 4 and (bh.ledger.get_column("side") == "buy").all()
    assert bh.position[-1] == pytest.approx(bh.position[4]) and (bh.actions == BUY).all()
    # momentum: buy when the feature is > 0, sell when < 0 (NaN reads as 0: hold)
    x = ep.features[: bh.n_steps, 0]
    expected = np.where(np.nan_to_num(x) > 0, BUY, np.where(np.nan_to_num(x) < 0, SELL, HOLD))
    np.testing.assert_array_equal(results["momentum"].actions, expected)
    # random is reproducible: begin() restarts its generator
    again = bt.run_policies(ep, {"random": RandomPolicy(0)}, config)["random"]
    np.testing.assert_array_equal(again.actions, results["random"].actions)
    for mode in ("fraction", "limit"):
        out = bt.run_policies(ep, baselines(), EnvConfig(initial_quote=50_000.0, action_mode=mode))
        assert out["always_hold"].ledger.height == 0
        assert out["buy_and_hold"].ledger.height >= 1


def test_compare_one_row_per_policy_and_split():
    ep = random_episode(n=90, seed=5)
    table = bt.compare(ep, {"hold": AlwaysHold(), "bh": BuyAndHold()}, EnvConfig(initial_quote=50_000.0),
                    splits={"early": range(30), "late": (40, 88)})
    assert table.height == 4
    assert set(zip(table.get_column("policy"), table.get_column("split"))) == {
        ("hold", "early"), ("hold", "late"), ("bh", "early"), ("bh", "late")}
    assert all(name in table.columns for name in METRIC_NAMES)
    late = table.filter(pl.col("split") == "late")
    assert late.get_column("start_row").to_list() == [40, 40]
    assert late.get_column("first_block").to_list() == [int(ep.as_of[40])] * 2
    assert late.get_column("n_steps").to_list() == [48, 48]
    hold = table.filter(pl.col("policy") == "hold")
    assert hold.get_column("pnl_net").to_list() == [0.0, 0.0] and hold.get_column("n_trades").to_list() == [0, 0]
    splits = pytest.importorskip("rl.splits")
    folds = splits.walk_forward(len(ep), folds=2, train_size=None, test_size=20)
    results = bt.run_splits(ep, {"bh": BuyAndHold()}, EnvConfig(), folds)
    assert [k for k in results] == [("fold_0", "bh"), ("fold_1", "bh")]
    assert results[("fold_1", "bh")].stop_row == 88  # the last row has no next decision in the market


def test_metrics_formulas_by_hand():
    equity = np.array([100.0, 110.0, 99.0, 108.9, 108.9])  # returns +10%, -10%, +10%, 0
    ledger = pl.DataFrame({"decision_block": [1, 2, 3, 4], "block": [2, 3, 4, 5],
                           "side": ["buy", "buy", "sell", "sell"], "base_delta": [2.0, 1.0, -1.0, -2.0],
                           "quote_delta": [-201.0, -130.0, 120.0, 200.0], "exec_price": [100.0, 130.0, 120.0, 100.0],
                           "mid": [100.0] * 4, "fee": [0.5, 0.25, 0.25, 0.5], "gas": [1.0, 0.0, 0.0, 0.0],
                           "slippage": [0.1, 0.1, 0.1, 0.1]}, schema=bt.LEDGER_SCHEMA)
    m = compute_metrics(equity, equity + 1.0, ledger, per_year=4.0)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["annualized_return"] == pytest.approx(0.089)  # 4 steps = one year here
    std = math.sqrt((0.075 ** 2 + 0.125 ** 2 + 0.075 ** 2 + 0.025 ** 2) / 3)
    assert m["sharpe"] == pytest.approx(0.025 / std * 2)
    assert m["sortino"] == pytest.approx(0.025 / math.sqrt(0.01 / 4) * 2)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["var_95"] == pytest.approx(0.085)  # 5% quantile of [-0.1, 0, 0.1, 0.1]: -0.1 + 0.15 x 0.1
    assert m["cvar_95"] == pytest.approx(0.1)
    # cost 331 for 3 base (avg 110.33): sell 1 for 120 wins, sell 2 for 200 (< 220.67) loses
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["turnover"] == pytest.approx((200 + 130 + 120 + 200) / equity.mean())
    assert (m["fees_paid"], m["gas_paid"], m["slippage_paid"]) == pytest.approx((1.5, 1.0, 0.4))
    assert m["pnl_net"] == pytest.approx(8.9) and m["pnl_gross"] == pytest.approx(8.9)
    flat = compute_metrics(np.full(5, 100.0), np.full(5, 100.0), ledger.head(0))
    assert (flat["sharpe"], flat["sortino"], flat["max_drawdown"], flat["var_95"]) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(flat["hit_rate"]) and flat["n_trades"] == 0
    assert hit_rate(ledger.slice(2, 1), initial_base=1.0, initial_price=100.0) == 1.0  # a starting position
    assert periods_per_year(stride=2) == pytest.approx(365 * 24 * 3600 / 12 / 2)


def test_report_png_and_markdown():
    ep = random_episode(n=60, seed=2)
    results = bt.run_policies(ep, {"bh": BuyAndHold(), "hold": AlwaysHold()}, EnvConfig(initial_quote=50_000.0))
    png = equity_png(results)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert equity_png(results["bh"])[:4] == b"\x89PNG"
    table = bt.compare(ep, {"bh": BuyAndHold(), "hold": AlwaysHold()}, EnvConfig(initial_quote=50_000.0))
    md = markdown_table(table)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| policy | split | total_return") and len(lines) == 4
    frame = bt.equity_frame(results)
    assert frame.height == 2 * len(results["bh"].equity) and frame.columns[:3] == ["policy", "block", "equity"]
