"""dex_swaps: Uniswap V2 and V3 `Swap` logs as trades, with the columns of Dune's `dex.trades`.

Direction follows Dune's spellbook (see `chainlake.decode.schemas`), amounts are exact strings plus
decimal-adjusted floats, `price` = token_sold_amount / token_bought_amount (what one unit of the bought
token cost, in sold-token units). Pool tokens come from `token0()`/`token1()` (`chainlake.decode.metadata`).
V2 here means the V2 event ABI: forks that emit the same event (Sushiswap, the devnet) are included.
"""

from __future__ import annotations

import polars as pl

from chainlake.decode import abi
from chainlake.decode.prices import usd_tokens
from chainlake.decode.schemas import DEX_SWAPS
from chainlake.decode.table import DecodeContext, DecodedTable, adjusted, pool_protocols
from chainlake.ingest.convert import ENGINE

PROTOCOL_V2, PROTOCOL_V3 = "uniswap_v2", "uniswap_v3"
SIDES = ("token_bought_amount_raw", "token_sold_amount_raw")


def _pick(cond: pl.Expr, a: str, b: str, out: str) -> list[pl.Expr]:
    """`out` and `out_f64` taken from amount `a` where cond, else from `b`."""
    return [pl.when(cond).then(pl.col(a)).otherwise(pl.col(b)).alias(out),
            pl.when(cond).then(pl.col(f"{a}_f64")).otherwise(pl.col(f"{b}_f64")).alias(f"{out}_f64")]


def v2_trades(events: pl.LazyFrame) -> pl.LazyFrame:
    """V2 Swap rows -> which side (0/1) was bought and sold, and the exact amounts (Dune's rule)."""
    bought0 = pl.col("amount0_out") != "0"
    sold1 = (pl.col("amount0_in") == "0") | (pl.col("amount1_out") == "0")
    return events.with_columns(
        *_pick(bought0, "amount0_out", "amount1_out", SIDES[0]),
        *_pick(sold1, "amount1_in", "amount0_in", SIDES[1]),
        bought0.alias("bought0"), (~sold1).alias("sold0"),
        pl.col("to").alias("recipient"), pl.lit(PROTOCOL_V2).alias("protocol"),
        pl.lit(None, pl.String).alias("sqrt_price_x96"), pl.lit(None, pl.String).alias("liquidity"),
        pl.lit(None, pl.Int64).alias("tick"),
    )


def v3_trades(events: pl.LazyFrame) -> pl.LazyFrame:
    """V3 Swap rows (signed amounts, pool's view: negative = paid out to the trader) -> sides."""
    bought0 = pl.col("amount0").str.starts_with("-")
    absolute = [pl.col(f"amount{i}").str.strip_prefix("-").alias(f"abs{i}") for i in (0, 1)]
    absolute += [pl.col(f"amount{i}_f64").abs().alias(f"abs{i}_f64") for i in (0, 1)]
    return events.with_columns(absolute).with_columns(
        *_pick(bought0, "abs0", "abs1", SIDES[0]), *_pick(bought0, "abs1", "abs0", SIDES[1]),
        bought0.alias("bought0"), (~bought0).alias("sold0"), pl.lit(PROTOCOL_V3).alias("protocol"),
    )


COMMON = ["block_number", "transaction_index", "transaction_hash", "log_index", "address", "protocol", "bought0",
          "sold0", *SIDES, *(f"{s}_f64" for s in SIDES), "sender", "recipient", "sqrt_price_x96", "liquidity", "tick"]


def build(ctx: DecodeContext) -> pl.DataFrame:
    v2 = abi.decode_event(ctx.logs, abi.V2_SWAP)
    v3 = abi.decode_event(ctx.logs, abi.V3_SWAP)
    pools = ctx.metadata.pools(pool_protocols((v2, PROTOCOL_V2), (v3, PROTOCOL_V3)))
    tokens = ctx.metadata.tokens(pools.get_column("token0").to_list() + pools.get_column("token1").to_list())
    usd = list(usd_tokens(ctx.metadata.chain_id(), zip(tokens.get_column("token"), tokens.get_column("symbol"))))
    # The rest is one query (see DecodeContext), over the kinds of swaps the block has: usually one
    kinds = [(v2, v2_trades), (v3, v3_trades)]
    present = [(events, sides) for events, sides in kinds if events.height] or kinds[:1]  # same columns either way
    trades = pl.concat([sides(events.lazy()).select(COMMON) for events, sides in present], how="vertical_relaxed")
    trades = trades.rename({"address": "pool"}).join(pools.lazy().select("pool", "token0", "token1", "fee"),
                                                     on="pool", how="left", maintain_order="left")
    trades = trades.with_columns(
        pl.when("bought0").then(pl.col("token0")).otherwise(pl.col("token1")).alias("token_bought"),
        pl.when("sold0").then(pl.col("token0")).otherwise(pl.col("token1")).alias("token_sold"),
    )
    for side in ("bought", "sold"):
        trades = trades.join(
            tokens.lazy().select(pl.col("token").alias(f"token_{side}"), pl.col("decimals").alias(f"{side}_decimals"),
                                 pl.col("symbol").alias(f"token_{side}_symbol")),
            on=f"token_{side}", how="left", maintain_order="left")
    trades = trades.with_columns(
        adjusted("token_bought_amount_raw_f64", "bought_decimals").alias("token_bought_amount"),
        adjusted("token_sold_amount_raw_f64", "sold_decimals").alias("token_sold_amount"),
    ).with_columns(
        pl.when(pl.col("token_bought_amount") > 0)
        .then(pl.col("token_sold_amount") / pl.col("token_bought_amount")).alias("price"))
    trades = trades.with_columns(
        pl.when(pl.col("token_sold").is_in(usd)).then(pl.col("token_sold_amount"))
        .when(pl.col("token_bought").is_in(usd)).then(pl.col("token_bought_amount"))
        .alias("amount_usd"))
    trades = trades.join(ctx.tx_columns(), on=["block_number", "transaction_index"], how="left", maintain_order="left")
    return ctx.with_block_time(trades).collect(engine=ENGINE)


TABLE = DecodedTable(
    name="dex_swaps", schema=DEX_SWAPS, keys=("block_number", "log_index"), reads=("logs", "transactions", "blocks"),
    build=build, description="Uniswap V2/V3 swaps as trades (Dune dex.trades columns): tokens bought/sold, "
                             "exact and adjusted amounts, price, tx sender, recipient, gas price.",
)
