"""Performance metrics of a backtest, from its equity curve (one value per decision) and its trade ledger.

Definitions (r_t = V_{t+1} / V_t - 1, the simple return of step t; P = steps per year):
- total_return = V_n / V_0 - 1; annualized_return = (1 + total_return) ** (P / n) - 1 (-1 if wiped out).
- sharpe = mean(r) / std(r, ddof=1) * sqrt(P); sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)
  (downside deviation against 0 over all steps). Both are 0 when the returns are all 0, +-inf when the
  deviation is 0 but the mean is not, NaN with fewer than 2 steps (sharpe) or no step (sortino).
- max_drawdown = max_t (1 - V_t / max_{s<=t} V_s), a positive fraction (0.25 = a 25% fall from a peak).
- var_95 = -q_5%(r) (numpy's default linear-interpolated quantile), cvar_95 = -mean(r[r <= q_5%(r)]):
  historical, per step, signed as losses (positive = a loss; negative when even the worst 5% gained).
- turnover = sum of |quote exchanged with the pool| (gas excluded) / mean(V): how many times the book's
  average value was traded over the run (not annualized).
- hit_rate: share of closing trades (sells) with a positive realized P&L, average-cost accounting: a buy
  adds its quote paid (fee and gas included) to the cost of the position, a sell realizes its quote
  received (after fee and gas) minus the average cost of the base it sells. A starting position is
  costed at the start's mid. NaN without sells.
- fees_paid, gas_paid, slippage_paid: sums over the ledger (quote units); pnl_net = V_n - V_0 and
  pnl_gross = G_n - G_0 of the gross (no fee, no gas) equity curve.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

SECONDS_PER_YEAR = 365 * 24 * 3600
METRIC_NAMES = ("total_return", "annualized_return", "sharpe", "sortino", "max_drawdown", "var_95", "cvar_95",
                "turnover", "hit_rate", "n_trades", "fees_paid", "gas_paid", "slippage_paid", "pnl_net",
                "pnl_gross", "final_value")


def periods_per_year(stride: int = 1, block_seconds: float = 12.0) -> float:
    """Decision steps per year: blocks per year (365 days of `block_seconds` blocks) / stride."""
    return SECONDS_PER_YEAR / block_seconds / stride


def step_returns(equity: np.ndarray) -> np.ndarray:
    equity = np.asarray(equity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return equity[1:] / equity[:-1] - 1.0


def _ratio(mean: float, dev: float, scale: float) -> float:
    if dev > 0:
        return mean / dev * scale
    return 0.0 if mean == 0 else math.copysign(math.inf, mean)


def sharpe(returns: np.ndarray, per_year: float) -> float:
    if len(returns) < 2:
        return math.nan
    return _ratio(float(np.mean(returns)), float(np.std(returns, ddof=1)), math.sqrt(per_year))


def sortino(returns: np.ndarray, per_year: float) -> float:
    if len(returns) == 0:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    return _ratio(float(np.mean(returns)), downside, math.sqrt(per_year))


def max_drawdown(equity: np.ndarray) -> float:
    equity = np.asarray(equity, dtype=np.float64)
    if len(equity) == 0:
        return math.nan
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def drawdown_curve(equity: np.ndarray) -> np.ndarray:
    """V_t / max_{s<=t} V_s - 1 (<= 0)."""
    equity = np.asarray(equity, dtype=np.float64)
    return equity / np.maximum.accumulate(equity) - 1.0


def var_cvar(returns: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    if len(returns) == 0:
        return math.nan, math.nan
    q = float(np.quantile(returns, 1.0 - level))
    return 0.0 - q, 0.0 - float(np.mean(returns[returns <= q]))


def hit_rate(ledger: pl.DataFrame, initial_base: float = 0.0, initial_price: float = math.nan) -> float:
    """Average-cost realized P&L per sell > 0, as a share of sells (see the module docstring)."""
    if ledger.height == 0:
        return math.nan
    position, cost = float(initial_base), float(initial_base) * (initial_price if initial_base else 0.0)
    wins = closes = 0
    for delta, quote in zip(ledger.get_column("base_delta").to_list(), ledger.get_column("quote_delta").to_list()):
        if delta > 0:
            position += delta
            cost += -quote
        elif delta < 0 and position > 0:
            sold = min(-delta, position)
            basis = cost * sold / position
            closes += 1
            wins += quote - basis > 0
            cost -= basis
            position -= sold
    return wins / closes if closes else math.nan


def compute_metrics(equity, equity_gross, ledger: pl.DataFrame, *, per_year: float = periods_per_year(),
                    initial_base: float = 0.0, initial_price: float = math.nan) -> dict[str, float]:
    """All of METRIC_NAMES for one run (see the module docstring)."""
    equity = np.asarray(equity, dtype=np.float64)
    equity_gross = np.asarray(equity_gross, dtype=np.float64)
    r = step_returns(equity)
    n = len(r)
    total = float(equity[-1] / equity[0] - 1.0) if len(equity) else math.nan
    if n == 0 or not math.isfinite(total):
        annual = math.nan
    elif total <= -1:
        annual = -1.0
    else:
        exponent = math.log1p(total) * per_year / n
        annual = math.expm1(exponent) if exponent < 700 else math.inf
    var, cvar = var_cvar(r)
    total_of = (lambda col: float(ledger.get_column(col).sum()) if ledger.height else 0.0)
    volume = float((ledger.get_column("quote_delta") + ledger.get_column("gas")).abs().sum()) if ledger.height else 0.0
    mean_value = float(np.mean(equity)) if len(equity) else math.nan
    return {
        "total_return": total,
        "annualized_return": annual,
        "sharpe": sharpe(r, per_year),
        "sortino": sortino(r, per_year),
        "max_drawdown": max_drawdown(equity),
        "var_95": var,
        "cvar_95": cvar,
        "turnover": volume / mean_value if mean_value > 0 else math.nan,
        "hit_rate": hit_rate(ledger, initial_base, initial_price),
        "n_trades": ledger.height,
        "fees_paid": total_of("fee"),
        "gas_paid": total_of("gas"),
        "slippage_paid": total_of("slippage"),
        "pnl_net": float(equity[-1] - equity[0]),
        "pnl_gross": float(equity_gross[-1] - equity_gross[0]),
        "final_value": float(equity[-1]),
    }
