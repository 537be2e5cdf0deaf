"""Pending swap pressure per pool per block: router swaps waiting in the mempool, by direction.

A `mempool_swaps` transaction is attributed to the pool of its first hop: the Uniswap V2 pool (of the
grid) whose token pair is {path[0], path[1]}. It buys token0 when path[1] is the pool's token0, else it
sells token0. It is *pending at block b* when

    first_seen_head <= b - 1  AND  (included_block is null OR included_block > b)  AND  last_seen_head >= b - 1

i.e. the pool as it stood when block b arrived: seen before b (while the head was b - 1 or earlier), still
seen then, and not mined in b or earlier. Sightings made while the head *is* b come after b arrived, so a
trader deciding on b's arrival (for block b + 1) cannot have them: they count from block b + 1 on. That
makes the row of block b final the moment b lands, so a decision taken then and the backtest, which reads
the row later, see the same value (`rl.paper`). `last_seen_head` comes from the `mempool` table, which
`mempool_swaps` does not carry. Amounts: amount_in, or amount_in_max for
exact-output swaps (an upper bound), decimal-adjusted. A sell's volume is its token0 in; a buy pays
token1, converted to token0 at the mid price known at b (the `mid_price` view). Two V2 pools on the same
pair (forks) would each count the transaction.

Pending intervals become events (+1 at first_seen_head + 1, -1 after the last pending block) summed
cumulatively per pool, then as-of joined onto the dense grid: the cost is in transactions, not in
transactions x blocks. Zeros when nothing is pending; pending_imbalance =
(buy - sell) / (buy + sell) volume, null when nothing is pending.
"""

import polars as pl

from chainlake.features import feature_view

STATE = ("buy_count", "sell_count", "sell_token0", "buy_token1")


@feature_view(entity="pool", owner="research", ttl_blocks=4, history_blocks=1,
              description="Pending router swaps per pool: buy/sell counts, token0 volumes, imbalance")
def mempool_pressure(pool_blocks: pl.LazyFrame, pools: pl.LazyFrame, tokens: pl.LazyFrame,
                     mempool_swaps: pl.LazyFrame, mempool: pl.LazyFrame,
                     feature_mid_price: pl.LazyFrame) -> pl.LazyFrame:
    grid_pools = pool_blocks.select("pool").unique()
    pairs = pools.join(grid_pools, on="pool", how="semi").select("pool", "token0", "token1")
    swaps = (mempool_swaps
             .select("transaction_hash", pl.col("path").list.get(0, null_on_oob=True).alias("hop_in"),
                     pl.col("path").list.get(1, null_on_oob=True).alias("hop_out"),
                     pl.coalesce("amount_in_raw_f64", "amount_in_max_raw_f64").alias("amount_raw"),
                     "first_seen_head", "included_block")
             .join(mempool.select("transaction_hash", "last_seen_head"), on="transaction_hash", how="left")
             .join(tokens.select(pl.col("token").alias("hop_in"), "decimals"), on="hop_in", how="left"))
    buys = swaps.join(pairs, left_on=["hop_in", "hop_out"], right_on=["token1", "token0"]).with_columns(
        pl.lit(True).alias("is_buy"))
    sells = swaps.join(pairs, left_on=["hop_in", "hop_out"], right_on=["token0", "token1"]).with_columns(
        pl.lit(False).alias("is_buy"))
    amount = pl.col("amount_raw") / pl.lit(10.0).pow(pl.col("decimals").cast(pl.Float64))
    pending = pl.concat([buys, sells], how="diagonal").select(
        "pool",
        (pl.col("first_seen_head") + 1).alias("start"),
        pl.min_horizontal(pl.col("included_block") - 1, pl.col("last_seen_head") + 1).alias("end"),  # null: pending
        pl.col("is_buy").cast(pl.Int64).alias("buy_count"),
        (~pl.col("is_buy")).cast(pl.Int64).alias("sell_count"),
        pl.when(~pl.col("is_buy")).then(amount).otherwise(0.0).alias("sell_token0"),
        pl.when(pl.col("is_buy")).then(amount).otherwise(0.0).alias("buy_token1"),
    ).filter(pl.col("start").is_not_null() & (pl.col("end").is_null() | (pl.col("end") >= pl.col("start"))))
    events = pl.concat([
        pending.select("pool", pl.col("start").alias("block_number"), *STATE),
        pending.filter(pl.col("end").is_not_null()).select(
            "pool", (pl.col("end") + 1).alias("block_number"), *[-pl.col(c) for c in STATE]),
    ])
    running = (events.group_by("pool", "block_number").agg(pl.col(c).sum() for c in STATE)
               .sort("pool", "block_number")
               .with_columns(pl.col(c).cum_sum().over("pool") for c in STATE)
               .sort("block_number"))
    grid = (pool_blocks.select("pool", "block_number").sort("block_number")  # both sides sorted by block
            .join_asof(running, on="block_number", by="pool", strategy="backward", check_sortedness=False)
            .join(feature_mid_price.select("pool", "block_number", "mid_price"), on=["pool", "block_number"],
                  how="left")
            .with_columns(pl.col("buy_count", "sell_count").fill_null(0)))
    # a running float sum returns to ~0 (not exactly 0) when its last transaction leaves: counts decide
    buy = pl.when(pl.col("buy_count") > 0).then(pl.col("buy_token1") / pl.col("mid_price")).otherwise(0.0)
    sell = pl.when(pl.col("sell_count") > 0).then(pl.col("sell_token0")).otherwise(0.0)
    out = grid.select("pool", "block_number", pl.col("buy_count").alias("pending_buy_count"),
                      pl.col("sell_count").alias("pending_sell_count"), buy.alias("pending_buy_volume"),
                      sell.alias("pending_sell_volume"))
    total = pl.col("pending_buy_volume") + pl.col("pending_sell_volume")
    return out.with_columns(
        pl.when(total > 0).then((pl.col("pending_buy_volume") - pl.col("pending_sell_volume")) / total)
        .alias("pending_imbalance")
    ).sort("pool", "block_number")
