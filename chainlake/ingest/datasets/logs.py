"""logs: every event log in the range (eth_getLogs over block windows, halved when the node says the query
is too large: see `chainlake.rpc.QUERY_TOO_LARGE` for the messages recognised)."""

from __future__ import annotations

import polars as pl

from chainlake.ingest.convert import checked, quantity
from chainlake.ingest.dataset import Context, Dataset, concat
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import LOGS
from chainlake.rpc import QUERY_TOO_LARGE, RpcError

LOG = pl.Struct({
    "address": pl.String, "topics": pl.List(pl.String), "data": pl.String, "blockNumber": pl.String,
    "blockHash": pl.String, "transactionHash": pl.String, "transactionIndex": pl.String, "logIndex": pl.String,
})
INTS = {"block_number": "blockNumber", "transaction_index": "transactionIndex", "log_index": "logIndex"}
BLOCKS_PER_REQUEST = 25  # measured on anvil: wider windows cost the node more CPU per log
TOPICS = [f"topic{i}" for i in range(4)]

# convert's select, built once (polars expressions are immutable; building them costs more than running
# them on one block)
COLUMNS = (
    *[quantity(src).alias(dst) for dst, src in INTS.items()],
    pl.col("blockHash").alias("block_hash"), pl.col("transactionHash").alias("transaction_hash"),
    pl.col("address"),
    *[pl.col("topics").list.get(i, null_on_oob=True).alias(f"topic{i}") for i in range(4)],
    pl.col("data"),
)


def convert(frame: pl.DataFrame) -> pl.DataFrame:
    """eth_getLogs answers (one list per call) -> rows of the logs schema."""
    raw = frame.select(pl.col("result").explode().drop_nulls()).to_series().struct.unnest()
    out = raw.select(COLUMNS)
    return checked(out, raw, INTS, "logs", lower=["block_hash", "transaction_hash", "address", *TOPICS])


def windows(blocks: BlockRange, size: int) -> list[BlockRange]:
    return [BlockRange(b, min(b + size - 1, blocks.last)) for b in range(blocks.first, blocks.last + 1, size)]


def fetch(ctx: Context, blocks: BlockRange, size: int, filters: dict | None = None) -> pl.DataFrame:
    """getLogs over windows of `size` blocks (one call per request, requests in parallel), as rows of the
    logs schema; on a 'too many results' answer, halve the window and start over."""
    calls = [("eth_getLogs", [{"fromBlock": hex(w.first), "toBlock": hex(w.last), **(filters or {})}])
             for w in windows(blocks, size)]
    try:
        frames = ctx.client.frames(calls, pl.List(LOG), batch_size=1)
    except RpcError as exc:
        if size == 1 or not QUERY_TOO_LARGE.search(exc.rpc_message):
            raise
        return fetch(ctx, blocks, max(1, size // 2), filters)
    return convert(concat(frames, pl.List(LOG)))


def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    return fetch(ctx, blocks, int(ctx.options.get("log_blocks_per_request", BLOCKS_PER_REQUEST)))


DATASET = Dataset(
    name="logs", schema=LOGS, keys=("block_number", "log_index"),
    needs={"logs": ("eth_getLogs",)},
    collect=collect, description="Event logs: emitting address, topic0..3, data, with block/tx position.",
)
