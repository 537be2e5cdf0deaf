"""A bull/bear regime label per pool per block, from a causal trend rule on the mid price, with bounded memory.

fast and slow are exponential moving averages of ln(mid price) with spans 32 and 256 (alpha = 2 / (span + 1)),
each over a bounded trailing window of blocks (FAST_WINDOW = 128, SLOW_WINDOW = 512: the weights beyond are
below 2% of the newest one): the weight of block j in the average at b is (1 - alpha)^(b - j), normalised
over the blocks of the window that have a price. trend_strength = fast - slow.

The label is bull/bear with hysteresis, so it does not flicker around zero: it is the sign of the most recent
block within the last LABEL_WINDOW blocks where trend_strength was outside the band (> +BAND bull,
< -BAND bear); with none there, the sign of the current trend_strength (>= 0: bull; |trend| < 1e-12 counts as 0,
since a constant price's two averages equal it only up to rounding). A row needs WARMUP
blocks with a price among the last SLOW_WINDOW blocks; before, regime, regime_code and trend_strength are
null.

Every part looks back a bounded number of blocks (no recursion over the whole history), so a row at block b
depends only on mid prices of blocks b - (SLOW_WINDOW + LABEL_WINDOW - 1) + 1 .. b: the online engine
computes it from that window, equal to the full computation.
"""

import polars as pl

from chainlake.features import feature_view

FAST, SLOW = 32, 256  # EMA spans
FAST_WINDOW, SLOW_WINDOW = 128, 512  # blocks each EMA looks back
LABEL_WINDOW = 1024  # blocks the hysteresis remembers the last out-of-band trend
WARMUP = 64  # blocks with a price before a label
BAND = 0.005  # in log price: 0.5%
ZERO_TREND = 1e-12  # a constant price's two EMAs equal it up to rounding: a trend this small is zero


def bounded_ema(value: str, span: int, window: int) -> pl.Expr:
    """EMA of `value` over the last `window` rows of a dense per-block grid (nulls carry no weight)."""
    decay = 1 - 2 / (span + 1)
    weights = [decay ** (window - 1 - k) for k in range(window)]  # the last weight is the newest block's
    present = pl.col(value).is_not_null().cast(pl.Float64)
    total = pl.col(value).fill_null(0.0).rolling_sum(window_size=window, weights=weights, min_samples=1)
    norm = present.rolling_sum(window_size=window, weights=weights, min_samples=1)
    return pl.when(norm > 0).then(total / norm)


@feature_view(entity="pool", owner="research", ttl_blocks=64, history_blocks=SLOW_WINDOW + LABEL_WINDOW - 1,
              description="Bull/bear regime (bounded EMA 32 vs 256 of log mid, hysteresis) and trend strength")
def market_regime(feature_mid_price: pl.LazyFrame) -> pl.LazyFrame:
    log_mid = pl.when(pl.col("mid_price") > 0).then(pl.col("mid_price").log())
    rows = feature_mid_price.select("pool", "block_number", log_mid.alias("log_mid"))
    span = rows.group_by("pool").agg(pl.col("block_number").min().alias("lo"), pl.col("block_number").max().alias("hi"))
    dense = (span.select("pool", pl.int_ranges("lo", pl.col("hi") + 1).alias("block_number"))
             .explode("block_number").with_columns(pl.col("block_number").cast(pl.Int64))
             .join(rows.with_columns(pl.lit(True).alias("__row")), on=["pool", "block_number"], how="left")
             .sort("pool", "block_number"))  # one row per block, so a window of rows is a window of blocks
    has_price = pl.col("log_mid").is_not_null().cast(pl.Int64)
    dense = dense.with_columns(
        (bounded_ema("log_mid", FAST, FAST_WINDOW) - bounded_ema("log_mid", SLOW, SLOW_WINDOW)).over("pool")
        .alias("trend"),
        (has_price.rolling_sum(window_size=SLOW_WINDOW, min_samples=1).over("pool") >= WARMUP).alias("__ready"),
    )
    trend = pl.col("trend")
    ready = pl.col("__ready") & trend.is_not_null()
    outside = pl.when(ready & (trend > BAND)).then(1).when(ready & (trend < -BAND)).then(-1)
    dense = dense.with_columns(
        outside.forward_fill().over("pool").alias("__last"),
        pl.when(outside.is_not_null()).then(pl.col("block_number")).forward_fill().over("pool").alias("__at"),
    )
    remembered = (pl.col("block_number") - pl.col("__at")) < LABEL_WINDOW
    code = pl.when(ready).then(pl.when(remembered).then(pl.col("__last"))
                               .otherwise(pl.when(trend >= -ZERO_TREND).then(1).otherwise(-1))).cast(pl.Int64)
    return dense.filter(pl.col("__row").is_not_null()).select(
        "pool", "block_number",
        pl.when(code == 1).then(pl.lit("bull")).when(code == -1).then(pl.lit("bear")).alias("regime"),
        code.alias("regime_code"),
        pl.when(ready).then(trend).alias("trend_strength"),
    )
