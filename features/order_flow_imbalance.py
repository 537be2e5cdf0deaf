"""Signed order flow per pool per block: buy minus sell volume of token0, and its normalized imbalance.

A buy is a swap whose bought token is the pool's token0 (its volume: token0 bought), a sell one that
sold token0 (token0 sold); amounts are decimal-adjusted token0 units. `order_flow_n` = buys - sells over
the blocks b-n+1..b; `imbalance_n` = (buys - sells) / (buys + sells) in [-1, 1], null when no volume.
Buys and sells are summed separately and subtracted last, so a quiet window is exactly 0, not rounding noise.
"""

import polars as pl

from chainlake.features import feature_view

WINDOWS = (16, 64)


@feature_view(entity="pool", owner="research", ttl_blocks=16, history_blocks=64,
              description="Token0 bought minus sold over 1/16/64 blocks and buy/sell imbalance")
def order_flow_imbalance(pool_blocks: pl.LazyFrame, pool_reserves: pl.LazyFrame,
                         dex_swaps: pl.LazyFrame) -> pl.LazyFrame:
    token0 = pool_reserves.group_by("pool").agg(pl.col("token0").first())
    swaps = dex_swaps.join(token0, on="pool").group_by("pool", "block_number").agg(
        pl.col("token_bought_amount").filter(pl.col("token_bought") == pl.col("token0")).sum().alias("buy_1"),
        pl.col("token_sold_amount").filter(pl.col("token_sold") == pl.col("token0")).sum().alias("sell_1"))
    flows = (pool_blocks.select("pool", "block_number")
             .join(swaps, on=["pool", "block_number"], how="left")
             .with_columns(pl.col("buy_1", "sell_1").fill_null(0.0))
             .sort("pool", "block_number"))
    flows = flows.with_columns(
        pl.col(f"{side}_1").rolling_sum_by("block_number", window_size=f"{n}i").over("pool").alias(f"{side}_{n}")
        for side in ("buy", "sell") for n in WINDOWS)
    return flows.select(
        "pool", "block_number",
        pl.col("buy_1").alias("buy_volume_token0"), pl.col("sell_1").alias("sell_volume_token0"),
        *[(pl.col(f"buy_{n}") - pl.col(f"sell_{n}")).alias(f"order_flow_{n}") for n in (1, *WINDOWS)],
        *[pl.when(pl.col(f"buy_{n}") + pl.col(f"sell_{n}") > 0)
          .then((pl.col(f"buy_{n}") - pl.col(f"sell_{n}")) / (pl.col(f"buy_{n}") + pl.col(f"sell_{n}")))
          .alias(f"imbalance_{n}") for n in WINDOWS],
    )
