"""transactions: every transaction with its receipt fields, one row per transaction.

Bodies come from eth_getBlockByNumber(full=true); receipts from eth_getBlockReceipts (one call per block)
where the node serves it, else eth_getTransactionReceipt per transaction. Both fetches run at once and
are joined on (block_number, transaction_index); a receipt count that differs from the block's
transaction count is an error, never a partial row set.
"""

from __future__ import annotations

import polars as pl

from chainlake.errors import NodeError
from chainlake.ingest.convert import ENGINE, checked, fill_wide, quantity, uint256_columns
from chainlake.ingest.dataset import Context, Dataset, batch_size, block_calls, concat, in_parallel
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import TRANSACTIONS

TX = pl.Struct({
    "hash": pl.String, "transactionIndex": pl.String, "from": pl.String, "to": pl.String, "nonce": pl.String,
    "value": pl.String, "input": pl.String, "gas": pl.String, "gasPrice": pl.String,
    "maxFeePerGas": pl.String, "maxPriorityFeePerGas": pl.String, "type": pl.String, "chainId": pl.String,
})
BLOCK = pl.Struct({"number": pl.String, "timestamp": pl.String, "transactions": pl.List(TX)})
RECEIPT = pl.Struct({
    "transactionHash": pl.String, "transactionIndex": pl.String, "blockNumber": pl.String, "status": pl.String,
    "gasUsed": pl.String, "effectiveGasPrice": pl.String, "cumulativeGasUsed": pl.String,
    "contractAddress": pl.String, "logs": pl.List(pl.Struct({"logIndex": pl.String})),
})
BODY_BATCH, RECEIPT_BATCH = 10, 10  # blocks per request (see dataset.batch_size)
BODY_INTS = {
    "block_number": "number", "block_timestamp": "timestamp", "transaction_index": "transactionIndex",
    "nonce": "nonce", "gas_limit": "gas", "gas_price": "gasPrice", "max_fee_per_gas": "maxFeePerGas",
    "max_priority_fee_per_gas": "maxPriorityFeePerGas", "transaction_type": "type", "chain_id": "chainId",
}
RECEIPT_INTS = {
    "r_block": "blockNumber", "r_index": "transactionIndex", "status": "status", "gas_used": "gasUsed",
    "effective_gas_price": "effectiveGasPrice", "cumulative_gas_used": "cumulativeGasUsed",
}

# The converters' selects, built once (polars expressions are immutable; building them costs more than
# running them on one block)
BODY_COLUMNS = (
    *[quantity(src).alias(dst) for dst, src in BODY_INTS.items()],
    pl.col("hash").alias("transaction_hash"), pl.col("from").alias("from_address"),
    pl.col("to").alias("to_address"), pl.col("input"), pl.col("value").alias("value_hex"),
    *uint256_columns("value", "value"),
)
RECEIPT_COLUMNS = (
    *[quantity(src).alias(dst) for dst, src in RECEIPT_INTS.items()],
    pl.col("transactionHash").alias("r_hash"), pl.col("contractAddress").alias("contract_address"),
    pl.col("logs").list.len().cast(pl.Int64).alias("logs_count"),
)


def convert_bodies(frame: pl.DataFrame) -> pl.DataFrame:
    """Full blocks -> one row per transaction body (exact uint256 value)."""
    if frame["result"].null_count():
        raise NodeError("eth_getBlockByNumber returned no block for a requested block number")
    raw = (frame.lazy().select(pl.col("result").struct.unnest())
           .explode("transactions").filter(pl.col("transactions").is_not_null())
           .select("number", "timestamp", pl.col("transactions").struct.unnest())).collect(engine=ENGINE)
    out = raw.select(BODY_COLUMNS)
    out = checked(out, raw, BODY_INTS, "transactions", lower=["transaction_hash", "from_address", "to_address"])
    out = fill_wide(out, "value_hex", "value")
    out.drop_in_place("value_hex")  # our own frame: no query, unlike drop
    return out


def convert_receipts(frame: pl.DataFrame) -> pl.DataFrame:
    """Block receipts (a list per call) or single receipts -> one row per receipt."""
    result = frame.get_column("result")
    if isinstance(result.dtype, pl.List):
        result = frame.select(pl.col("result").explode()).to_series()
    if result.null_count():
        raise NodeError("the node returned no receipt for a mined transaction or block")
    raw = result.struct.unnest()
    out = raw.select(RECEIPT_COLUMNS)
    return checked(out, raw, RECEIPT_INTS, "receipts", lower=["r_hash", "contract_address"])


def fetch_receipts(ctx: Context, blocks: BlockRange, bodies: pl.DataFrame | None) -> pl.DataFrame:
    if ctx.methods["receipts"] == "eth_getBlockReceipts":
        calls = block_calls("eth_getBlockReceipts", blocks)
        frames = ctx.client.frames(calls, pl.List(RECEIPT), batch_size(ctx, RECEIPT_BATCH))
        return convert_receipts(concat(frames, pl.List(RECEIPT)))
    calls = [("eth_getTransactionReceipt", [h]) for h in bodies["transaction_hash"]]
    return convert_receipts(concat(ctx.client.frames(calls, RECEIPT), RECEIPT))


def join(bodies: pl.DataFrame, receipts: pl.DataFrame | None, blocks: BlockRange) -> pl.DataFrame:
    """Bodies + receipts, checking that every transaction has exactly its receipt."""
    if receipts.height != bodies.height:
        raise NodeError(f"blocks {blocks.first}..{blocks.last}: {bodies.height} transactions but "
                        f"{receipts.height} receipts")
    merged = bodies.join(receipts, left_on=["block_number", "transaction_index"], right_on=["r_block", "r_index"],
                         how="left", maintain_order="left")
    if merged["r_hash"].null_count() or (merged["r_hash"] != merged["transaction_hash"]).any():
        raise NodeError(f"blocks {blocks.first}..{blocks.last}: receipts do not match the transactions")
    return merged


def fetch_bodies(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    frames = ctx.client.frames(block_calls("eth_getBlockByNumber", blocks, True), BLOCK, batch_size(ctx, BODY_BATCH))
    return convert_bodies(concat(frames, BLOCK))


def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    if ctx.methods["receipts"] == "eth_getBlockReceipts":
        bodies, receipts = in_parallel(lambda: fetch_bodies(ctx, blocks), lambda: fetch_receipts(ctx, blocks, None))
    else:
        bodies = fetch_bodies(ctx, blocks)
        receipts = fetch_receipts(ctx, blocks, bodies)
    return join(bodies, receipts, blocks)


DATASET = Dataset(
    name="transactions", schema=TRANSACTIONS, keys=("block_number", "transaction_index"),
    needs={"blocks": ("eth_getBlockByNumber",), "receipts": ("eth_getBlockReceipts", "eth_getTransactionReceipt")},
    collect=collect,
    description="Transactions with receipt fields (status, gas used, effective gas price, contract, logs count).",
)
