"""blocks: one row per block header (eth_getBlockByNumber without transaction bodies)."""

from __future__ import annotations

import polars as pl

from chainlake.errors import NodeError
from chainlake.ingest.convert import checked, quantity
from chainlake.ingest.dataset import Context, Dataset, batch_size, block_calls, concat
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import BLOCKS

HEADER = pl.Struct({
    "number": pl.String, "hash": pl.String, "parentHash": pl.String, "timestamp": pl.String,
    "miner": pl.String, "gasUsed": pl.String, "gasLimit": pl.String, "baseFeePerGas": pl.String,
    "size": pl.String, "extraData": pl.String, "transactions": pl.List(pl.String),
})
INTS = {"block_number": "number", "timestamp": "timestamp", "gas_used": "gasUsed", "gas_limit": "gasLimit",
        "base_fee_per_gas": "baseFeePerGas", "size": "size"}

# convert's select, built once (polars expressions are immutable; building them costs more than running
# them on one block)
COLUMNS = (
    *[quantity(src).alias(dst) for dst, src in INTS.items()],
    pl.col("hash").alias("block_hash"), pl.col("parentHash").alias("parent_hash"),
    pl.col("miner"),
    pl.col("transactions").list.len().cast(pl.Int64).alias("transaction_count"),
    pl.col("extraData").alias("extra_data"),
)


def convert(frame: pl.DataFrame) -> pl.DataFrame:
    """Headers (one per call) -> rows of the blocks schema."""
    if frame["result"].null_count():
        raise NodeError("eth_getBlockByNumber returned no block for a requested block number")
    raw = frame.get_column("result").struct.unnest()
    out = raw.select(COLUMNS)
    return checked(out, raw, INTS, "blocks", lower=["block_hash", "parent_hash", "miner"])


def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    calls = block_calls("eth_getBlockByNumber", blocks, False)
    return convert(concat(ctx.client.frames(calls, HEADER, batch_size(ctx, 100)), HEADER))


DATASET = Dataset(
    name="blocks", schema=BLOCKS, keys=("block_number",),
    needs={"blocks": ("eth_getBlockByNumber",)},
    collect=collect, description="Block headers: hash, parent, timestamp, miner, gas, base fee, tx count.",
)
