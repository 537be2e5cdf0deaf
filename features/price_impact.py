"""Pool depth and the price impact of swaps of given sizes, per pool per block (Uniswap V2, 0.3% fee).

Sizes are in **token0 units** (decimal-adjusted, e.g. 1, 10, 100 WETH for a WETH pool whose token0 is WETH):

- a *sell* of s swaps exactly s token0 in; it receives getAmountOut(s, reserve0, reserve1) token1;
- a *buy* of s swaps in the token1 worth s token0 at the mid price (s * mid) and receives
  getAmountOut(s * mid, reserve1, reserve0) token0.

getAmountOut(a, r_in, r_out) = a * 997 * r_out / (r_in * 1000 + a * 997), the V2 formula in float.
impact = relative difference between execution price (token1 per token0) and mid price, positive = cost:
impact_buy_s = exec / mid - 1, impact_sell_s = 1 - exec / mid. Both include the 0.3% fee, so a tiny
swap costs ~0.3%. Reserves are forward-filled from pool_reserves onto the grid (as-of join, inputs
sorted by block first: polars' join_asof silently mismatches on unsorted input). depth_token0/1 are the
reserves, liquidity = sqrt(reserve0 * reserve1).
"""

import polars as pl

from chainlake.features import feature_view

SIZES = (1, 10, 100)
FEE = 0.997


def amount_out(amount_in: pl.Expr, reserve_in: pl.Expr, reserve_out: pl.Expr) -> pl.Expr:
    return amount_in * FEE * reserve_out / (reserve_in + amount_in * FEE)


@feature_view(entity="pool", owner="research", ttl_blocks=64, history_blocks=1,
              description="Reserves depth, liquidity and price impact of 1/10/100 token0 swaps (V2, 0.3% fee)")
def price_impact(pool_blocks: pl.LazyFrame, pool_reserves: pl.LazyFrame) -> pl.LazyFrame:
    reserves = pool_reserves.select("pool", "block_number", "reserve0", "reserve1").sort("block_number")
    grid = pool_blocks.select("pool", "block_number").sort("block_number")
    # both sides sorted by block_number just above (polars cannot check it per `by` group, hence no check)
    state = grid.join_asof(reserves, on="block_number", by="pool", strategy="backward", check_sortedness=False)
    r0, r1 = pl.col("reserve0"), pl.col("reserve1")
    state = state.with_columns(pl.when((r0 > 0) & (r1 > 0)).then(r1 / r0).alias("__mid"))
    mid = pl.col("__mid")
    impacts = []
    for s in SIZES:
        impacts.append((s / amount_out(s * mid, r1, r0) - 1).alias(f"impact_buy_{s}"))
        impacts.append((1 - amount_out(pl.lit(float(s)), r0, r1) / (s * mid)).alias(f"impact_sell_{s}"))
    return state.select(
        "pool", "block_number", r0.alias("depth_token0"), r1.alias("depth_token1"),
        pl.when(mid.is_not_null()).then((r0 * r1).sqrt()).alias("liquidity"), *impacts,
    ).sort("pool", "block_number")
