"""liquidity_events: Uniswap V2 and V3 `Mint` / `Burn` logs (liquidity added or removed).

`provider` is who added or removed the liquidity: the position `owner` for V3; for V2, whose events name
only the router as `sender`, the transaction sender. Amounts are exact and decimal-adjusted.
"""

from __future__ import annotations

import polars as pl

from chainlake.decode import abi
from chainlake.decode.schemas import LIQUIDITY_EVENTS
from chainlake.decode.table import DecodeContext, DecodedTable, adjusted, pool_protocols
from chainlake.ingest.convert import ENGINE

V2, V3 = "uniswap_v2", "uniswap_v3"
COLUMNS = ["block_number", "transaction_index", "transaction_hash", "log_index", "address", "protocol", "kind",
           "sender", "owner", "recipient", "amount0", "amount0_f64", "amount1", "amount1_f64", "liquidity_raw",
           "tick_lower", "tick_upper"]


def _fill(frame: pl.DataFrame, protocol: str, kind: str) -> pl.LazyFrame:
    """One event's decoded rows as COLUMNS (lazy: part of `build`'s query)."""
    defaults = {"sender": pl.String, "owner": pl.String, "recipient": pl.String, "liquidity_raw": pl.String,
                "tick_lower": pl.Int64, "tick_upper": pl.Int64}
    renames = {"amount": "liquidity_raw", "to": "recipient"}
    present = {renames.get(c, c) for c in frame.columns}
    return frame.lazy().rename({c: renames[c] for c in frame.columns if c in renames}).with_columns(
        pl.lit(protocol).alias("protocol"), pl.lit(kind).alias("kind"),
        *(pl.lit(None, dtype).alias(c) for c, dtype in defaults.items() if c not in present)).select(COLUMNS)


def build(ctx: DecodeContext) -> pl.DataFrame:
    decoded = {(protocol, kind): abi.decode_event(ctx.logs, event) for protocol, kind, event in
               [(V2, "mint", abi.V2_MINT), (V2, "burn", abi.V2_BURN), (V3, "mint", abi.V3_MINT),
                (V3, "burn", abi.V3_BURN)]}
    pools = ctx.metadata.pools(pool_protocols(*[(frame, protocol) for (protocol, _), frame in decoded.items()]))
    tokens = ctx.metadata.tokens(pools.get_column("token0").to_list() + pools.get_column("token1").to_list())
    # The rest is one query (see DecodeContext), over the events the block has (usually none: every
    # part has the same columns, so one empty part gives the empty table)
    present = [(key, frame) for key, frame in decoded.items() if frame.height] or list(decoded.items())[:1]
    events = pl.concat([_fill(frame, protocol, kind) for (protocol, kind), frame in present], how="vertical_relaxed")
    events = events.rename({"address": "pool", "amount0": "amount0_raw", "amount0_f64": "amount0_raw_f64",
                            "amount1": "amount1_raw", "amount1_f64": "amount1_raw_f64"})
    events = events.join(pools.lazy().select("pool", "token0", "token1"), on="pool", how="left", maintain_order="left")
    for i in (0, 1):
        events = events.join(
            tokens.lazy().select(pl.col("token").alias(f"token{i}"), pl.col("decimals").alias(f"decimals{i}")),
            on=f"token{i}", how="left", maintain_order="left")
    events = events.with_columns(adjusted("amount0_raw_f64", "decimals0").alias("amount0"),
                                 adjusted("amount1_raw_f64", "decimals1").alias("amount1"))
    events = events.join(ctx.tx_columns().select("block_number", "transaction_index", "tx_from"),
                         on=["block_number", "transaction_index"], how="left", maintain_order="left")
    events = events.with_columns(
        pl.when(pl.col("protocol") == V3).then(pl.col("owner")).otherwise(pl.col("tx_from")).alias("provider"))
    return ctx.with_block_time(events).collect(engine=ENGINE)


TABLE = DecodedTable(
    name="liquidity_events", schema=LIQUIDITY_EVENTS, keys=("block_number", "log_index"),
    reads=("logs", "transactions", "blocks"), build=build,
    description="Uniswap V2/V3 Mint and Burn: liquidity added or removed per pool, exact and adjusted amounts.",
)
