"""Realized volatility per pool per block: the rolling std of 1-block log returns over 16 and 64 blocks.

Reads the `mid_price` view (view-on-view lineage). A window covers the blocks b-n+1..b (by block number,
so a gap in the lake never widens it) and needs at least half its returns (8 of 16, 32 of 64), else
null. Units: per-block log-return std (multiply by sqrt(blocks per period) to scale).
"""

import polars as pl

from chainlake.features import feature_view

WINDOWS = (16, 64)


@feature_view(entity="pool", owner="research", ttl_blocks=16, history_blocks=64,
              description="Realized volatility: std of 1-block log returns over 16 and 64 blocks")
def realized_vol_64(feature_mid_price: pl.LazyFrame) -> pl.LazyFrame:
    returns = feature_mid_price.select("pool", "block_number", "log_return_1").sort("pool", "block_number")
    return returns.with_columns(
        pl.col("log_return_1").rolling_std_by("block_number", window_size=f"{n}i", min_samples=n // 2)
        .over("pool").alias(f"realized_vol_{n}")
        for n in WINDOWS
    ).drop("log_return_1")
