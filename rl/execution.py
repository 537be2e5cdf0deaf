"""The execution model: what a trade on a Uniswap V2 pool really gets, block by block.

Shared by the environment and the backtester, so training and evaluation charge the same costs.
All functions are numpy-vectorized: scalars work, and so do arrays of many envs at once.

Timing (see `rl.market`): a decision at as-of block b knows blocks < b. Its trade lands in block
e = b + latency and executes against the reserves at the start of block e, i.e. the end of block e - 1:
`state_index = index(b) + latency - 1` in a `PoolMarket`'s arrays. latency 0 is the best case (top of
the very block the agent targets, at the state it has seen); the default 1 lands a block later. Gas is
charged at block e's base fee plus a priority tip, in ETH, converted to quote at the end of block e - 1.

Costs of a trade of q base units, against reserves (B, Q) with pool fee f (0.3% on V2):
- buying q base costs `amount_in_for_out(q, Q, B, f)` quote (constant product, fee on the input);
- selling q base pays `amount_out(q, B, Q, f)` quote;
- fee = f x the input (in quote: the buy's quote in, or the sold base valued at the mid);
- slippage = what the trade loses against the mid price besides the fee (price impact of its size);
- caps: a trade takes at most `max_reserve_fraction` of the reserve it draws from (liquidity), a buy
  spends at most the quote balance left after gas, and a sell sells at most the base held.
With `charge_fees=False` the pool fee and gas are zero, so a run reports P&L without fees (the price
impact of size stays: it is the market's answer, not a fee).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ExecutionConfig:
    latency_blocks: int = 1
    gas_units: int = 120_000  # a router swap on a V2 pair
    priority_fee_gwei: float = 1.0
    max_reserve_fraction: float = 0.05
    charge_fees: bool = True

    def __post_init__(self):
        if self.latency_blocks < 0:
            raise ValueError("latency_blocks must be >= 0")
        if not 0 < self.max_reserve_fraction < 1:
            raise ValueError("max_reserve_fraction must be in (0, 1)")


def amount_out(amount_in, reserve_in, reserve_out, fee):
    """Uniswap V2 getAmountOut in floats: out = in*(1-f)*R_out / (R_in + in*(1-f))."""
    effective = np.asarray(amount_in, dtype=np.float64) * (1.0 - fee)
    return effective * reserve_out / (reserve_in + effective)


def amount_in_for_out(amount_out_, reserve_in, reserve_out, fee):
    """Uniswap V2 getAmountIn in floats: in = R_in*out / ((R_out - out)*(1-f)); inf if out >= R_out."""
    out = np.asarray(amount_out_, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(out < reserve_out, reserve_in * out / ((reserve_out - out) * (1.0 - fee)), np.inf)


@dataclass
class Fills:
    """What each trade did (arrays, one entry per env; 0 where nothing traded)."""

    base_delta: np.ndarray  # + bought, - sold
    quote_delta: np.ndarray  # quote received (+) or paid (-), gas included
    fee_quote: np.ndarray  # pool fee, in quote
    gas_quote: np.ndarray  # gas, in quote
    slippage_quote: np.ndarray  # price impact against the mid, in quote
    traded: np.ndarray  # bool


def gas_cost_quote(market, exec_index, config: ExecutionConfig) -> np.ndarray:
    """Gas of one swap landing in block `exec_index`, in quote (ETH price at the end of the block before)."""
    if not config.charge_fees:
        return np.zeros(np.shape(exec_index))
    gwei = market.base_fee_gwei[exec_index] + config.priority_fee_gwei
    return config.gas_units * gwei * 1e-9 * market.eth_price_quote[np.maximum(exec_index - 1, 0)]


def execute(market, exec_index, base_qty, base_balance, quote_balance, config: ExecutionConfig) -> Fills:
    """Trade `base_qty` base units (+ buy, - sell, 0 nothing) landing in block index `exec_index`.

    Against the reserves at the end of block index `exec_index - 1`, capped by liquidity and balances;
    a trade capped to nothing (or one that cannot pay its gas) does not happen and costs nothing.
    """
    exec_index = np.asarray(exec_index)
    qty = np.asarray(base_qty, dtype=np.float64) * np.ones(np.shape(exec_index))
    state = np.maximum(exec_index - 1, 0)
    rb, rq = market.reserve_base[state], market.reserve_quote[state]
    fee = market.fee if config.charge_fees else 0.0
    gas = gas_cost_quote(market, exec_index, config)
    mid = rq / rb
    # buys: capped by liquidity (share of the base reserve) and by the quote left after gas
    buy = np.clip(qty, 0.0, config.max_reserve_fraction * rb)
    budget = np.maximum(quote_balance - gas, 0.0)
    buy = np.minimum(buy, amount_out(budget, rq, rb, fee))
    # sells: capped by the base held and by liquidity (share of the quote reserve paid out)
    sell = np.minimum(np.clip(-qty, 0.0, None), np.maximum(base_balance, 0.0))
    max_sell = amount_in_for_out(config.max_reserve_fraction * rq, rb, rq, fee)
    sell = np.minimum(sell, max_sell)
    # a buy capped by the budget costs exactly the budget: clamp the float round trip to it
    quote_in = np.where(buy > 0, np.minimum(amount_in_for_out(buy, rq, rb, fee), budget), 0.0)
    quote_out = np.where(sell > 0, amount_out(sell, rb, rq, fee), 0.0)
    # affordability up to float rounding ((q - gas) + gas may exceed q by an ulp)
    traded = ((buy > 1e-12) | (sell > 1e-12)) & (quote_in + gas <= (quote_balance + quote_out) * (1 + 1e-12))
    base_delta = np.where(traded, buy - sell, 0.0)
    fee_quote = np.where(traded, fee * (quote_in + sell * mid), 0.0)
    # the trade's loss against the mid, minus the fee: price impact
    cost_vs_mid = np.where(buy > 0, quote_in - buy * mid, sell * mid - quote_out)
    slippage = np.where(traded, cost_vs_mid - fee * (quote_in + sell * mid), 0.0)
    gas = np.where(traded, gas, 0.0)
    quote_delta = np.where(traded, quote_out - quote_in - gas, 0.0)
    return Fills(base_delta, quote_delta, fee_quote, gas, np.maximum(slippage, 0.0), traded)


def limit_fill_index(market, start_index: int, side: int, limit_price: float, base_qty: float,
                     window: int, config: ExecutionConfig) -> int | None:
    """The first block index in [start_index, start_index + window) where a limit order fills, or None.

    A buy (side +1) of `base_qty` fills when its whole execution price (quote paid / base received,
    fee included) is at or below `limit_price`; a sell (side -1) when at or above. The order is then
    executed at that block by `execute`; after `window` blocks it is cancelled.
    """
    stop = min(start_index + window, len(market.blocks))
    if start_index >= stop:
        return None
    idx = np.arange(start_index, stop)
    state = np.maximum(idx - 1, 0)
    rb, rq = market.reserve_base[state], market.reserve_quote[state]
    fee = market.fee if config.charge_fees else 0.0
    if side > 0:
        price = amount_in_for_out(base_qty, rq, rb, fee) / base_qty
        ok = price <= limit_price
    else:
        price = amount_out(base_qty, rb, rq, fee) / base_qty
        ok = price >= limit_price
    hits = np.flatnonzero(ok)
    return int(idx[hits[0]]) if hits.size else None
