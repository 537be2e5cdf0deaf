"""Uniswap V2 math in exact integers (same rounding as the contracts), plus arbitrage and sandwich sizing.

The market predicts on-chain outcomes with these functions instead of calling the node, which keeps it fast;
because rounding matches the Pair/Router exactly, predictions made from the last block's reserves are exact
whenever no other transaction touches the pool first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FEE_NUM, FEE_DEN = 997, 1000


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: output for an exact input, 0.3% fee on the input."""
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return 0
    with_fee = amount_in * FEE_NUM
    return with_fee * reserve_out // (reserve_in * FEE_DEN + with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn: input needed for an exact output (rounded up by one wei)."""
    if amount_out <= 0 or reserve_in <= 0 or reserve_out <= amount_out:
        raise ValueError("insufficient liquidity for that output")
    return reserve_in * amount_out * FEE_DEN // ((reserve_out - amount_out) * FEE_NUM) + 1


@dataclass(frozen=True)
class ArbTrade:
    """Sell `amount_in` of the pool side `sell_base` (True: base->quote) expecting `amount_out`; profit in quote units."""

    sell_base: bool
    amount_in: int
    amount_out: int
    profit_quote: float


def arb_trade(reserve_base: int, reserve_quote: int, price: float) -> ArbTrade | None:
    """The profit-maximising trade that moves the pool toward `price` (quote raw units per base raw unit).

    With fee factor r = 0.997 the pool is arbitrage-free while p*r <= y/x <= p/r. Outside that band the
    optimal input solves d(profit)/d(in) = 0: selling quote dy = (sqrt(p*r*x*y) - y)/r, selling base
    dx = (sqrt(r*x*y/p) - x)/r. Returns None inside the band.
    """
    x, y, r = reserve_base, reserve_quote, FEE_NUM / FEE_DEN
    if x <= 0 or y <= 0 or price <= 0:
        return None
    pool_price = y / x
    if pool_price < price * r:  # base is cheap in the pool: buy base with quote
        amount_in = int((math.sqrt(price * r * x * y) - y) / r)
        out = get_amount_out(amount_in, y, x)
        return ArbTrade(False, amount_in, out, out * price - amount_in) if out > 0 else None
    if pool_price > price / r:  # base is dear in the pool: sell base for quote
        amount_in = int((math.sqrt(r * x * y / price) - x) / r)
        out = get_amount_out(amount_in, x, y)
        return ArbTrade(True, amount_in, out, out - amount_in * price) if out > 0 else None
    return None


@dataclass(frozen=True)
class Sandwich:
    """Front-run `front_in` (same direction as the victim), then sell back `front_out`; profit in the input token."""

    front_in: int
    front_out: int
    victim_out: int
    back_out: int

    @property
    def profit(self) -> int:
        return self.back_out - self.front_in


def simulate_sandwich(front_in: int, victim_in: int, reserve_in: int, reserve_out: int) -> Sandwich:
    """Outcome of front-run, victim, back-run on a pool that nothing else touches in between."""
    front_out = get_amount_out(front_in, reserve_in, reserve_out)
    r_in, r_out = reserve_in + front_in, reserve_out - front_out
    victim_out = get_amount_out(victim_in, r_in, r_out)
    r_in, r_out = r_in + victim_in, r_out - victim_out
    back_out = get_amount_out(front_out, r_out, r_in)
    return Sandwich(front_in, front_out, victim_out, back_out)


def best_sandwich(victim_in: int, victim_min_out: int, reserve_in: int, reserve_out: int, max_front: int) -> Sandwich | None:
    """Largest front-run that still lets the victim clear its minimum output, if that is profitable.

    The victim's output falls monotonically with the front-run size, so a bisection finds the largest
    admissible front-run; profit then peaks at or near that bound, so a few fractions of it are compared.
    """
    if get_amount_out(victim_in, reserve_in, reserve_out) < victim_min_out or max_front <= 0:
        return None
    lo, hi = 0, max_front
    while hi - lo > max(1, hi // 10_000):
        mid = (lo + hi) // 2
        if simulate_sandwich(mid, victim_in, reserve_in, reserve_out).victim_out >= victim_min_out:
            lo = mid
        else:
            hi = mid
    candidates = [simulate_sandwich(lo * k // 8, victim_in, reserve_in, reserve_out) for k in range(4, 9)]
    candidates = [c for c in candidates if c.front_in > 0 and c.victim_out >= victim_min_out]
    best = max(candidates, key=lambda c: c.profit, default=None)
    return best if best is not None and best.profit > 0 else None
