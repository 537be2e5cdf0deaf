"""A bull/bear regime label per pool per block, from a causal trend rule on the mid price.

fast = EMA(32) and slow = EMA(256) of ln(mid price) over the pool's blocks (ewm_mean with adjust=False:
a recursion over past blocks only); trend_strength = fast - slow. The label switches to bull when
trend_strength rises above +BAND and to bear when it falls below -BAND, and keeps its value inside the
band (hysteresis, so it does not flicker around zero). The first labelled block (the pool's 64th) is
seeded with the sign of trend_strength (>= 0: bull). Before it, regime, regime_code and trend_strength
are null: the EMAs have not seen enough history.
"""

import polars as pl

from chainlake.features import feature_view

FAST, SLOW = 32, 256
WARMUP = 64  # blocks of history before a label
BAND = 0.005  # in log price: 0.5%


@feature_view(entity="pool", owner="research", ttl_blocks=64,
              description="Bull/bear regime (EMA 32 vs 256 of log mid, hysteresis) and trend strength")
def market_regime(feature_mid_price: pl.LazyFrame) -> pl.LazyFrame:
    log_mid = pl.when(pl.col("mid_price") > 0).then(pl.col("mid_price").log())
    frame = feature_mid_price.select("pool", "block_number", log_mid.alias("log_mid")).sort("pool", "block_number")
    frame = frame.with_columns(
        (pl.col("log_mid").ewm_mean(span=FAST, adjust=False).over("pool")
         - pl.col("log_mid").ewm_mean(span=SLOW, adjust=False).over("pool")).alias("trend"),
        (pl.int_range(pl.len()).over("pool") + 1).alias("__n"),
    )
    trend = pl.col("trend")
    ready = (pl.col("__n") >= WARMUP) & trend.is_not_null()
    frame = frame.with_columns(ready.alias("__ready"))
    first = pl.col("__ready") & (pl.col("__ready").cast(pl.Int64).cum_sum().over("pool") == 1)
    signal = (pl.when(~pl.col("__ready")).then(None)
              .when(trend > BAND).then(1).when(trend < -BAND).then(-1)
              .when(first).then(pl.when(trend >= 0).then(1).otherwise(-1))
              .cast(pl.Int64))
    frame = frame.with_columns(signal.forward_fill().over("pool").alias("__state"))
    code = pl.when(pl.col("__ready")).then(pl.col("__state"))
    return frame.select(
        "pool", "block_number",
        pl.when(code == 1).then(pl.lit("bull")).when(code == -1).then(pl.lit("bear")).alias("regime"),
        code.alias("regime_code"),
        pl.when(pl.col("__ready")).then(trend).alias("trend_strength"),
    )
