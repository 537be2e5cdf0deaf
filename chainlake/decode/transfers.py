"""erc20_transfers: every ERC-20 `Transfer(address indexed, address indexed, uint256)` log, decoded.

Only logs of the ERC-20 shape (3 topics, one data word); ERC-721 transfers (token id as a 4th topic)
are skipped. Amounts are decimal-adjusted with the token's `decimals()` (null when it has none).
"""

from __future__ import annotations

import polars as pl

from chainlake.decode import abi
from chainlake.decode.schemas import ERC20_TRANSFERS
from chainlake.decode.table import DecodeContext, DecodedTable, adjusted
from chainlake.ingest.convert import ENGINE


def build(ctx: DecodeContext) -> pl.DataFrame:
    events = abi.decode_event(ctx.logs, abi.TRANSFER).rename(
        {"address": "token", "value": "amount_raw", "value_f64": "amount_raw_f64"})
    tokens = ctx.metadata.tokens(events.get_column("token").unique().to_list())
    out = events.lazy().join(tokens.lazy(), on="token", how="left", maintain_order="left").with_columns(
        adjusted("amount_raw_f64", "decimals").alias("amount"))
    return ctx.with_block_time(out).collect(engine=ENGINE)


TABLE = DecodedTable(
    name="erc20_transfers", schema=ERC20_TRANSFERS, keys=("block_number", "log_index"), reads=("logs", "blocks"),
    build=build, description="ERC-20 Transfer logs: token, from, to, exact and decimal-adjusted amount.",
)
