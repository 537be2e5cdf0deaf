"""`rl.execution`'s market-order arithmetic for one trade, compiled with numba: the kernels' shared core.

`rl.execution.execute` is written for numpy arrays (every env at once, ~35 array passes). The compiled loops,
`rl.fast_backtest._run` (a whole signal backtest) and `rl.env._discrete_step` (one vector-env step of N books),
execute one trade at a time in a numba loop; both call `gas_quote` and `execute_market_order` below (reading
the reserves at the end of the block before the landing block themselves), so the arithmetic lives once
outside `rl.execution`. It follows `execute` line by line, in the same order (numba neither reassociates
nor fuses floating-point operations without fastmath), so a compiled run equals the numpy one to the last bit;
`tests/test_fast_backtest.py` and `tests/test_rl_env.py` pin that.

This module imports nothing from `rl` (both `rl.env` and `rl.fast_backtest` import it).

Caveat when editing it: numba's on-disk cache (`cache=True`) checks only the file a function is defined in, so
the cached `_run` and `_discrete_step` do not notice a change here. After editing this module, delete the
numba cache files (`rl/__pycache__/*.nbi`, `*.nbc`) or touch `rl/env.py` and `rl/fast_backtest.py`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Relative slack of the gas affordability check, as in `rl.execution.execute`.
AFFORD_SLACK = 1 + 1e-12


@njit(cache=True)
def amount_out(amount_in, reserve_in, reserve_out, fee):
    """`rl.execution.amount_out` for scalars."""
    effective = amount_in * (1.0 - fee)
    return effective * reserve_out / (reserve_in + effective)


@njit(cache=True)
def amount_in_for_out(out, reserve_in, reserve_out, fee):
    """`rl.execution.amount_in_for_out` for scalars (inf if out >= reserve_out)."""
    if out < reserve_out:
        return reserve_in * out / ((reserve_out - out) * (1.0 - fee))
    return np.inf


@njit(cache=True)
def gas_quote(charge_fees, base_fee_gwei, eth_price_quote, gas_units, priority_fee_gwei):
    """`rl.execution.gas_cost_quote` for one swap: `base_fee_gwei` of the landing block (+ the tip), at the
    `eth_price_quote` of the block before; 0.0 when fees are off."""
    if not charge_fees:
        return 0.0
    return gas_units * (base_fee_gwei + priority_fee_gwei) * 1e-9 * eth_price_quote


@njit(cache=True)
def execute_market_order(qty, base, quote, rb, rq, gas, fee, max_reserve_fraction):
    """`rl.execution.execute` for one trade of `qty` base (+ buy, - sell) by a book holding `base` and `quote`,
    against reserves `rb`, `rq` (the end of the block before the landing block), paying `gas` quote (`gas_quote`)
    and the pool fee `fee` (0.0 when fees are off). Also prices the gross shadow fill: the same base quantity,
    no pool fee, no gas (`rl.env.VectorTradingEnv.step`).

    Returns (traded, base_delta, quote_delta, gross_quote_delta, exec_mid, fee_quote, gas_quote, slippage_quote),
    all 0 when the trade does not happen (as `execute`'s `np.where(traded, ..., 0.0)`). Scalars in and out (no
    arrays): numba does not inline one kernel into another, and this keeps the call cheap in the callers' loops."""
    mid = rq / rb
    # buys: capped by liquidity (share of the base reserve) and by the quote left after gas
    buy = min(max(qty, 0.0), max_reserve_fraction * rb)
    budget = max(quote - gas, 0.0)
    buy = min(buy, amount_out(budget, rq, rb, fee))
    # sells: capped by the base held and by liquidity (share of the quote reserve paid out)
    sell = min(max(-qty, 0.0), max(base, 0.0))
    sell = min(sell, amount_in_for_out(max_reserve_fraction * rq, rb, rq, fee))
    # a buy capped by the budget costs exactly the budget: clamp the float round trip to it
    quote_in = min(amount_in_for_out(buy, rq, rb, fee), budget) if buy > 0 else 0.0
    quote_out = amount_out(sell, rb, rq, fee) if sell > 0 else 0.0
    # affordability up to float rounding ((q - gas) + gas may exceed q by an ulp)
    traded = (buy > 1e-12 or sell > 1e-12) and quote_in + gas <= (quote + quote_out) * AFFORD_SLACK
    if not traded:
        return False, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    base_delta = buy - sell
    fee_quote = fee * (quote_in + sell * mid)
    # the trade's loss against the mid, minus the fee: price impact
    cost_vs_mid = quote_in - buy * mid if buy > 0 else sell * mid - quote_out
    quote_delta = quote_out - quote_in - gas
    # the gross shadow: the same base quantity, no pool fee, no gas
    if base_delta > 0:
        gross_delta = -amount_in_for_out(base_delta, rq, rb, 0.0)
    else:
        gross_delta = amount_out(-base_delta, rb, rq, 0.0)
    return True, base_delta, quote_delta, gross_delta, mid, fee_quote, gas, max(cost_vs_mid - fee_quote, 0.0)


__all__ = ["AFFORD_SLACK", "amount_in_for_out", "amount_out", "execute_market_order", "gas_quote"]
