"""Gas per pool per block: the base fee (gwei), its 16-block mean, and the median / max gas price of the pool's swaps.

base_fee_gwei comes from blocks.base_fee_per_gas, forward-filled over at most 15 blocks (pre-London blocks
have none; since London every block has one); base_fee_gwei_mean_16 averages the lake's blocks b-15..b (the
chain's, not only the pool's; by block number, so a gap in the lake never stretches it); a value filled
from block b-15 averages b-30..b-15, hence 31 blocks of history. The swap gas prices are over the distinct
transactions with a swap in the pool in the block (dex_swaps carries each transaction's receipt
effective_gas_price); null if none, swap_tx_count 0.

A polars view, not SQL, because the trading agent reads it on its decision path: online, DuckDB's fixed cost
per statement was most of a block's cost for this view (see bench/RESULTS.md, following the head). Its
values are the former SQL view's, the 16-block mean to 1e-15 relative (it adds in another order).
"""

import polars as pl

from chainlake.features import feature_view

FILL_BLOCKS = 16  # a base fee is carried to at most the 15 blocks after its own


def gwei(wei: str) -> pl.Expr:
    """A wei column in gwei, divided exactly (correctly rounded, as DuckDB and Python divide). polars divides a
    column by a scalar as a multiplication by the scalar's reciprocal, an ulp off at times (30 gwei would
    read 30.000000000000004): the divisor here is a column."""
    value = pl.col(wei).cast(pl.Float64)
    return value / (value * 0.0 + 1e9)


@feature_view(entity="pool", owner="research", ttl_blocks=16, history_blocks=31,
              description="Base fee (gwei), its 16-block mean, median/max gas price of the pool's swap txs")
def gas_price(pool_blocks: pl.LazyFrame, blocks: pl.LazyFrame, dex_swaps: pl.LazyFrame) -> pl.LazyFrame:
    fee = (blocks.filter(pl.col("base_fee_per_gas").is_not_null())
           .select("block_number", gwei("base_fee_per_gas").alias("base_fee_gwei"))
           .sort("block_number")
           .with_columns(pl.col("base_fee_gwei").rolling_mean_by("block_number", window_size=f"{FILL_BLOCKS}i")
                         .alias("base_fee_gwei_mean_16"),
                         pl.col("block_number").alias("fee_block")))
    swaps = (dex_swaps.select("pool", "block_number", "transaction_hash",
                              gwei("effective_gas_price").alias("gas_price_gwei"))
             .unique()
             .group_by("pool", "block_number")
             .agg(pl.len().cast(pl.Int64).alias("swap_tx_count"),
                  pl.col("gas_price_gwei").median().alias("swap_gas_price_median_gwei"),
                  pl.col("gas_price_gwei").max().alias("swap_gas_price_max_gwei")))
    fresh = pl.col("block_number") - pl.col("fee_block") < FILL_BLOCKS
    return (pool_blocks.select("pool", "block_number").sort("block_number")
            .join_asof(fee, on="block_number", strategy="backward", check_sortedness=False)
            .join(swaps, on=["pool", "block_number"], how="left")
            .select("pool", "block_number",
                    pl.when(fresh).then(pl.col("base_fee_gwei")).alias("base_fee_gwei"),
                    pl.when(fresh).then(pl.col("base_fee_gwei_mean_16")).alias("base_fee_gwei_mean_16"),
                    pl.col("swap_tx_count").fill_null(0),
                    "swap_gas_price_median_gwei", "swap_gas_price_max_gwei"))
