"""balances: exact native and ERC-20 balances of tracked addresses, at the blocks where they change.

Semantics (what a row means):
- a row (block B, address A, token T) holds A's balance of T *after* block B executed, read from the node
  with historical `eth_getBalance(A, B)` or `eth_call(T.balanceOf(A), B)`: the value is exact, never derived
  by summing transfers;
- every partition file has, for each tracked (address, token), one *anchor* row at the first block ingested
  in that partition (normally the partition's first block), then one row at each block where the balance
  differs from the previous row. So "the balance at block X" is the last row with block_number <= X, and a
  point-in-time join never needs to look into another partition;
- `token` is the ERC-20 contract, or NATIVE_TOKEN (0xeeee...eeee, EIP-7528) for ether; every tracked
  address gets a native row set, plus one per tracked token;
- a token whose `balanceOf` reverts or returns nothing at a block (not deployed yet, not an ERC-20) has a
  null balance there.

How changes are found: candidate blocks are gathered cheaply, then *confirmed* with the historical calls,
so a false candidate costs one call and never a row:
- ERC-20: any log of a tracked token that mentions the address in a topic or in its data (Transfer,
  and also WETH's Deposit/Withdrawal, mints, burns);
- native: from `trace_block`, every transaction it sent (gas) and every trace moving value to or from it
  (top-level and internal calls, creates, selfdestructs, rewards); from the headers, blocks it mined
  (fees) and withdrawals to it. Without a
  trace method every block is a candidate (exact, but more calls).
Limits: a token that changes balances without any event naming the holder (rebasing tokens), and ether
moved by a node-level edit (anvil_setBalance), are only re-read at anchors.
"""

from __future__ import annotations

from typing import Any

import orjson
import polars as pl

from chainlake.ingest.dataset import Context, Dataset, block_calls, concat, in_parallel, with_block_numbers
from chainlake.ingest.datasets.logs import fetch as fetch_logs
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import BALANCES, NATIVE_TOKEN
from chainlake.ingest.convert import uint256_frame
from chainlake.errors import MethodUnsupported
from chainlake.rpc import Call, RpcError, raise_for_error

BALANCE_OF = "0x70a08231"
HEADER = pl.Struct({
    "miner": pl.String, "withdrawals": pl.List(pl.Struct({"address": pl.String})),
})
TRACE = pl.Struct({
    "action": pl.Struct({"from": pl.String, "to": pl.String, "value": pl.String, "address": pl.String,
                         "refundAddress": pl.String, "balance": pl.String, "author": pl.String}),
    "result": pl.Struct({"address": pl.String}), "traceAddress": pl.List(pl.Int64),
})
_ZERO_VALUE = ("0x0", "0x", "0x00")


# -- candidates ------------------------------------------------------------------------------------------
def token_candidates(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    """(block_number, address, token) from any log of a tracked token that mentions a tracked address.

    Not only Transfer: WETH-style Deposit/Withdrawal, mints and burns move balances too. A mention is the
    address's 40 hex digits anywhere in topics 1-3 or the data (over-approximates; confirmation filters).
    """
    if not ctx.tokens:
        return pl.DataFrame(schema={"block_number": pl.Int64, "address": pl.String, "token": pl.String})
    logs = fetch_logs(ctx, blocks, 1000, {"address": list(ctx.tokens)})
    pattern = "(" + "|".join(a[2:] for a in ctx.addresses) + ")"
    text = pl.concat_str("topic1", "topic2", "topic3", "data", separator="|", ignore_nulls=True).str.to_lowercase()
    mentions = logs.select("block_number", pl.col("address").alias("token"), text.str.extract_all(pattern).alias("hit"))
    return (mentions.explode("hit").drop_nulls("hit")
            .select("block_number", pl.concat_str(pl.lit("0x"), "hit").alias("address"), "token").unique())


def native_candidates(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    """(block_number, address) where a tracked address may have gained or spent ether."""
    tracked = list(ctx.addresses)
    if "traces" not in ctx.methods or ctx.methods["traces"] != "trace_block":
        every = pl.DataFrame({"block_number": list(blocks.numbers())}, schema={"block_number": pl.Int64})
        return every.join(pl.DataFrame({"address": tracked}, schema={"address": pl.String}), how="cross")
    parts = in_parallel(
        lambda: _touched(ctx, blocks, "trace_block", (), pl.List(TRACE), _trace_addresses),
        lambda: _touched(ctx, blocks, "eth_getBlockByNumber", (False,), HEADER, _header_addresses),
    )
    return pl.concat(parts).filter(pl.col("address").is_in(tracked)).unique()


def _touched(ctx: Context, blocks: BlockRange, method: str, extra: tuple, dtype, extract) -> pl.DataFrame:
    """(block_number, address) pairs that `extract` finds in one per-block call's answers."""
    frames = ctx.client.frames(block_calls(method, blocks, *extra), dtype)
    found = extract(with_block_numbers(concat(frames, dtype), blocks))
    return found.select("block_number", pl.col("address").str.to_lowercase())


def _long(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return pl.concat([frame.select("block_number", pl.col(c).alias("address")) for c in columns]).drop_nulls()


def _trace_addresses(frame: pl.DataFrame) -> pl.DataFrame:
    rows = frame.explode("result").drop_nulls("result").unnest("result").unnest("action")
    rows = rows.unnest("result", separator="|")
    value = pl.coalesce("value", "balance")
    moving = rows.filter(~value.is_in(_ZERO_VALUE) & value.is_not_null())
    # Every transaction has a top-level trace; its sender pays gas even when no value moves.
    senders = rows.filter(pl.col("traceAddress").list.len() == 0).select("block_number", pl.col("from").alias("address"))
    return pl.concat([_long(moving, ["from", "to", "address", "refundAddress", "author", "result|address"]),
                      senders.drop_nulls()])


def _header_addresses(frame: pl.DataFrame) -> pl.DataFrame:
    rows = frame.unnest("result")
    miners = rows.select("block_number", pl.col("miner").alias("address"))
    withdrawals = (rows.select("block_number", "withdrawals").explode("withdrawals").drop_nulls("withdrawals")
                   .select("block_number", pl.col("withdrawals").struct.field("address").alias("address")))
    return pl.concat([miners, withdrawals]).drop_nulls()


# -- confirmation ----------------------------------------------------------------------------------------
def balance_call(address: str, token: str, block: int) -> Call:
    if token == NATIVE_TOKEN:
        return ("eth_getBalance", [address, hex(block)])
    data = BALANCE_OF + address[2:].rjust(64, "0")
    return ("eth_call", [{"to": token, "data": data}, hex(block)])


def _parse_balances(body: bytes, sent: list[Call]) -> list[str | None]:
    """Batch answers -> hex balances; a reverted or empty balanceOf is None (not an ERC-20 there)."""
    doc = orjson.loads(body)
    if isinstance(doc, dict):
        raise_for_error("batch", doc.get("error"))
    if not isinstance(doc, list) or len(doc) != len(sent):
        raise ValueError("batch answer has the wrong length")
    out: list[Any] = [None] * len(sent)
    for item in doc:
        i = item["id"]
        method = sent[i][0]
        if item.get("error") is not None:
            try:
                raise_for_error(method, item["error"])
            except MethodUnsupported:
                raise
            except RpcError:
                if method == "eth_getBalance":
                    raise
                continue  # balanceOf reverted: no balance at this block
        result = item.get("result")
        if not isinstance(result, str) or len(result) <= 2:
            continue  # "0x": no code at the token address (not deployed yet)
        out[i] = result if method == "eth_getBalance" else result[:66]  # balanceOf: the first ABI word
    return out


def read_balances(ctx: Context, keys: pl.DataFrame) -> pl.DataFrame:
    """Historical balance of each (block_number, address, token) row of `keys`, exact."""
    calls = [balance_call(a, t, b) for b, a, t in keys.select("block_number", "address", "token").iter_rows()]
    chunks = ctx.client.map(calls, _parse_balances)
    values = pl.Series("raw", [v for chunk in chunks for v in chunk], pl.String)
    frame = keys.with_columns(values)
    # A 32-byte ABI word (eth_call) or a quantity: both are hex integers.
    return uint256_frame(frame, "raw", "balance").drop("raw")


def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    pairs = _pairs(ctx)
    native, tokens = in_parallel(lambda: native_candidates(ctx, blocks), lambda: token_candidates(ctx, blocks))
    native = native.with_columns(pl.lit(NATIVE_TOKEN).alias("token"))
    anchors = pairs.with_columns(pl.lit(blocks.first, pl.Int64).alias("block_number"))
    keys = (pl.concat([anchors.select("block_number", "address", "token"),
                       native.select("block_number", "address", "token"), tokens.select("block_number", "address", "token")])
            .filter(pl.col("block_number") >= blocks.first).unique().sort("address", "token", "block_number"))
    return normalize(read_balances(ctx, keys)).select(BALANCES.names)


def _pairs(ctx: Context) -> pl.DataFrame:
    tokens = [NATIVE_TOKEN, *ctx.tokens]
    return pl.DataFrame({"address": list(ctx.addresses)}).join(pl.DataFrame({"token": tokens}), how="cross")


def normalize(frame: pl.DataFrame) -> pl.DataFrame:
    """Keep the first row of each (address, token) and rows whose balance differs from the previous one."""
    ordered = frame.sort("address", "token", "block_number")
    previous = pl.col("balance").shift(1).over("address", "token")
    first = pl.int_range(pl.len()).over("address", "token") == 0
    keep = first | (pl.col("balance").ne_missing(previous))
    return ordered.filter(keep).sort("block_number", "address", "token")


def replace(ctx: Context, blocks: BlockRange) -> pl.Expr:
    """An ingest replaces only the tracked pairs of its own run, in its blocks."""
    tracked = pl.concat_str("address", pl.lit("|"), "token").is_in([f"{a}|{t}" for a, t in _pairs(ctx).iter_rows()])
    return pl.col("block_number").is_between(blocks.first, blocks.last) & tracked


DATASET = Dataset(
    name="balances", schema=BALANCES, keys=("block_number", "address", "token"),
    needs={"balance": ("eth_getBalance",), "call": ("eth_call",), "logs": ("eth_getLogs",),
             "blocks": ("eth_getBlockByNumber",)},
    optional={"traces": ("trace_block",)},
    collect=collect, replace=replace, normalize=normalize,
    description="Exact native and ERC-20 balances of tracked addresses: anchors plus rows where they change.",
)
