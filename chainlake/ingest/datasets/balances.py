"""balances: exact native and ERC-20 balances of tracked addresses, at the blocks where they change.

Semantics (what a row means):
- a row (block B, address A, token T) holds A's balance of T *after* block B executed. It equals what
  historical `eth_getBalance(A, B)` / `eth_call(T.balanceOf(A), B)` answers: anchors are read from the
  node, later rows are derived from the node's own records of what moved and then verified (below);
- every partition file has, for each tracked (address, token), one *anchor* row at the first block ingested
  in that partition (normally the partition's first block), then one row at each block where the balance
  differs from the previous row. So "the balance at block X" is the last row with block_number <= X, and a
  point-in-time join never needs to look into another partition;
- `token` is the ERC-20 contract, or NATIVE_TOKEN (0xeeee...eeee, EIP-7528) for ether; every tracked
  address gets a native row set, plus one per tracked token;
- a token whose `balanceOf` reverts or returns nothing at a block (not deployed yet, not an ERC-20) has a
  null balance there.

How rows are computed: derive, then verify. A historical state call costs the node ~0.3-0.9 ms of CPU
whatever the batching (anvil 1.7.1), and a busy pair changes in most blocks, so reading every change costs
about one call per row. Instead, per partition and per (address, token):
- the anchor is read from the node at the first block (exact). A token with no balance there (not
  deployed yet) is anchored instead at the pair's first candidate block (read too, as the exact path does);
- ERC-20: each later balance is the anchor plus the token's `Transfer(from, to, value)` logs (and WETH9's
  `Deposit(dst, wad)` / `Withdrawal(src, wad)`) naming the address, summed exactly in Python ints;
- ether: the anchor plus what `trace_block` says moved (call/create/selfdestruct frames; a frame moves
  nothing if it or an ancestor failed; delegatecall/callcode/staticcall move nothing; reward traces),
  minus each sender's gas (receipt gas_used x effective_gas_price, plus blob gas), plus the miner's
  priority fees (effective_gas_price - base_fee) x gas_used, plus EIP-4895 withdrawals (gwei -> wei);
- verify: the derived balance at the partition's last block must equal the node's answer there (one call
  per pair). A pair that does not match, or cannot be derived (no balance at its anchor, no `trace_block`
  or `eth_getBlockReceipts` for ether, a running sum below zero), takes the exact path below, for that
  pair only, and is logged (a mismatch as a warning). Derivation only reports, at the blocks where a
  modelled change happened, the values the exact path would read there: both give the same rows
  (tested on the devnet). Option `balances_derive=False` takes the exact path for every pair.
What one check at the end cannot see: unmodelled changes that cancel out within one partition (a rebase
up then down by the same amount, anvil_setBalance there and back) would leave wrong rows between them.

The exact path (fallback): candidate blocks are gathered cheaply, then *confirmed* with historical calls,
so a false candidate costs one call and never a row:
- ERC-20: any log of a tracked token that mentions the address in a topic or in its data (Transfer,
  and also WETH's Deposit/Withdrawal, mints, burns); and, for a token without code at the first block,
  the block where it gets its code (null turns into a value there: `deploy_candidates`);
- native: from `trace_block`, every transaction it sent (gas) and every trace moving value to or from it
  (top-level and internal calls, creates, selfdestructs, rewards); from the headers, blocks it mined
  (fees) and withdrawals to it. Without a trace method every block is a candidate (exact, but more calls).
Limits of that path: a token that changes balances without any event naming the holder (rebasing
tokens), and ether moved by a node-level edit (anvil_setBalance), are re-read only at candidate blocks
and anchors (so such a change shows at the next candidate block, or the next partition's anchor).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
import polars as pl

from chainlake.ingest.dataset import (
    Context, Dataset, batch_size, block_calls, concat, in_parallel, with_block_numbers,
)
from chainlake.ingest.datasets.logs import fetch as fetch_logs
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import BALANCES, NATIVE_TOKEN
from chainlake.ingest.convert import flexible_quantity, hex_to_int, quantity, uint256_frame
from chainlake.errors import MethodUnsupported
from chainlake.rpc import Call, RpcError, raise_for_error

log = logging.getLogger(__name__)

BALANCE_OF = "0x70a08231"
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  # Transfer(address,address,uint256)
DEPOSIT = "0xe1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c"  # WETH9 Deposit(address,uint256)
WITHDRAWAL = "0x7fcf532c15f0a6db0bd6d0e038bea71d30d808c7d98cb3bf7268a95bf5081b65"  # WETH9 Withdrawal(address,uint256)
GWEI = 10**9
HEADER = pl.Struct({
    "miner": pl.String, "baseFeePerGas": pl.String,
    "withdrawals": pl.List(pl.Struct({"address": pl.String, "amount": pl.String})),
})
TRACE = pl.Struct({
    "action": pl.Struct({"from": pl.String, "to": pl.String, "value": pl.String, "address": pl.String,
                         "refundAddress": pl.String, "balance": pl.String, "author": pl.String,
                         "callType": pl.String}),
    "result": pl.Struct({"address": pl.String}), "traceAddress": pl.List(pl.Int64),
    "type": pl.String, "error": pl.String, "transactionPosition": pl.String,
})
RECEIPT = pl.Struct({
    "from": pl.String, "gasUsed": pl.String, "effectiveGasPrice": pl.String,
    "blobGasUsed": pl.String, "blobGasPrice": pl.String,
})
TRACE_BATCH = RECEIPT_BATCH = 10  # blocks per request (see dataset.batch_size)
_ZERO_VALUE = ("0x0", "0x", "0x00")
_DELTA = {"block_number": pl.Int64, "address": pl.String, "token": pl.String, "amount": pl.String}


# -- evidence: what the node recorded in the range, fetched once for candidates and derivation ------------
@dataclass
class Evidence:
    """Per-range node records; None where the node (or the request) gives none."""

    logs: pl.DataFrame | None  # logs of tracked tokens (rows of the logs schema)
    traces: pl.DataFrame | None  # one row per trace_block frame, flattened (see `_flat_traces`)
    headers: pl.DataFrame | None  # block_number, miner, baseFeePerGas, withdrawals
    receipts: pl.DataFrame | None  # block_number + RECEIPT fields, one row per transaction


def gather(ctx: Context, blocks: BlockRange) -> Evidence:
    """Fetch logs, traces, headers and receipts at once (each over the client's pool)."""
    jobs = {}
    if ctx.tokens:
        jobs["logs"] = lambda: fetch_logs(ctx, blocks, 1000, {"address": list(ctx.tokens)})
    if ctx.methods.get("traces") == "trace_block":  # without it, ether has no candidates and no derivation
        jobs["traces"] = lambda: _flat_traces(_per_block(ctx, blocks, "trace_block", (), pl.List(TRACE), TRACE_BATCH))
        jobs["headers"] = lambda: _per_block(ctx, blocks, "eth_getBlockByNumber", (False,), HEADER).unnest("result")
        if ctx.methods.get("receipts"):
            jobs["receipts"] = lambda: _receipts(ctx, blocks)
    done = dict(zip(jobs, in_parallel(*jobs.values()))) if jobs else {}
    return Evidence(done.get("logs"), done.get("traces"), done.get("headers"), done.get("receipts"))


def _per_block(ctx: Context, blocks: BlockRange, method: str, extra: tuple, dtype, batch: int | None = None):
    """One call per block, parsed natively: block_number, result."""
    size = batch_size(ctx, batch) if batch else None
    frames = ctx.client.frames(block_calls(method, blocks, *extra), dtype, size)
    return with_block_numbers(concat(frames, dtype), blocks).select("block_number", "result")


def _flat_traces(frame: pl.DataFrame) -> pl.DataFrame:
    """trace_block answers -> one row per frame: action fields, `result|address`, traceAddress, tx, ..."""
    rows = frame.explode("result").drop_nulls("result").unnest("result").unnest("action")
    rows = rows.unnest("result", separator="|")
    return rows.with_columns(flexible_quantity("transactionPosition").fill_null(-1).alias("tx"))


def _receipts(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    frame = _per_block(ctx, blocks, "eth_getBlockReceipts", (), pl.List(RECEIPT), RECEIPT_BATCH)
    return frame.explode("result").drop_nulls("result").unnest("result")


# -- candidates (the exact path) -------------------------------------------------------------------------
def token_candidates(ctx: Context, logs: pl.DataFrame | None) -> pl.DataFrame:
    """(block_number, address, token) from any log of a tracked token that mentions a tracked address.

    Not only Transfer: WETH-style Deposit/Withdrawal, mints and burns move balances too. A mention is the
    address's 40 hex digits anywhere in topics 1-3 or the data (over-approximates; confirmation filters).
    """
    if logs is None:
        return pl.DataFrame(schema={"block_number": pl.Int64, "address": pl.String, "token": pl.String})
    pattern = "(" + "|".join(a[2:] for a in ctx.addresses) + ")"
    text = pl.concat_str("topic1", "topic2", "topic3", "data", separator="|", ignore_nulls=True).str.to_lowercase()
    mentions = logs.select("block_number", pl.col("address").alias("token"), text.str.extract_all(pattern).alias("hit"))
    return (mentions.explode("hit").drop_nulls("hit")
            .select("block_number", pl.concat_str(pl.lit("0x"), "hit").alias("address"), "token").unique())


def native_candidates(ctx: Context, blocks: BlockRange, seen: Evidence) -> pl.DataFrame:
    """(block_number, address) where a tracked address may have gained or spent ether."""
    tracked = list(ctx.addresses)
    if seen.traces is None:
        every = pl.DataFrame({"block_number": list(blocks.numbers())}, schema={"block_number": pl.Int64})
        return every.join(pl.DataFrame({"address": tracked}, schema={"address": pl.String}), how="cross")
    found = pl.concat([_trace_addresses(seen.traces), _header_addresses(seen.headers)])
    found = found.select("block_number", pl.col("address").str.to_lowercase())
    return found.filter(pl.col("address").is_in(tracked)).unique()


def _long(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    return pl.concat([frame.select("block_number", pl.col(c).alias("address")) for c in columns]).drop_nulls()


def _trace_addresses(rows: pl.DataFrame) -> pl.DataFrame:
    value = pl.coalesce("value", "balance")
    moving = rows.filter(~value.is_in(_ZERO_VALUE) & value.is_not_null())
    # Every transaction has a top-level trace; its sender pays gas even when no value moves.
    top = rows.filter(pl.col("traceAddress").list.len() == 0)
    senders = top.select("block_number", pl.col("from").alias("address"))
    return pl.concat([_long(moving, ["from", "to", "address", "refundAddress", "author", "result|address"]),
                      senders.drop_nulls()])


def _header_addresses(rows: pl.DataFrame) -> pl.DataFrame:
    miners = rows.select("block_number", pl.col("miner").alias("address"))
    withdrawals = (rows.select("block_number", "withdrawals").explode("withdrawals").drop_nulls("withdrawals")
                   .select("block_number", pl.col("withdrawals").struct.field("address").alias("address")))
    return pl.concat([miners, withdrawals]).drop_nulls()


# -- derivation: signed amounts per (block, address, token), then a running sum from the anchor ------------
def _topic_address(col: str) -> pl.Expr:
    return pl.concat_str(pl.lit("0x"), pl.col(col).str.slice(26).str.to_lowercase())


def token_deltas(logs: pl.DataFrame | None, tracked: list[str]) -> pl.DataFrame:
    """Signed amounts from Transfer (3 topics, one data word) and WETH9 Deposit/Withdrawal logs.

    Other shapes (ERC-721 Transfer with 4 topics, custom mint events) are ignored on purpose: if they moved
    a balance, verification sees the mismatch and the pair falls back to the exact path.
    """
    if logs is None:
        return pl.DataFrame(schema=_DELTA)
    word = (pl.col("data").str.len_chars() == 66) & pl.col("topic1").is_not_null()
    two = pl.col("topic2").is_not_null() & pl.col("topic3").is_null()
    one = pl.col("topic2").is_null()
    topic0 = pl.col("topic0").str.to_lowercase()
    legs = [((topic0 == TRANSFER) & two, "topic1", "-"), ((topic0 == TRANSFER) & two, "topic2", ""),
            ((topic0 == DEPOSIT) & one, "topic1", ""), ((topic0 == WITHDRAWAL) & one, "topic1", "-")]
    frames = [logs.filter(word & when).select("block_number", _topic_address(topic).alias("address"),
                                              pl.col("address").alias("token"),
                                              pl.concat_str(pl.lit(sign), "data").alias("amount"))
              for when, topic, sign in legs]
    return pl.concat(frames).filter(pl.col("address").is_in(tracked))


def native_deltas(seen: Evidence, tracked: list[str]) -> pl.DataFrame | None:
    """Signed ether amounts: value moved by live frames, gas, miner tips, withdrawals (None: cannot derive)."""
    if seen.traces is None or seen.headers is None or seen.receipts is None:
        return None
    gas = _gas(seen.receipts, seen.headers)
    if gas is None:
        return None
    parts = [_value_moves(seen.traces), gas, _withdrawals(seen.headers)]
    out = pl.concat([p.select("block_number", pl.col("address").str.to_lowercase(), "amount") for p in parts])
    return out.filter(pl.col("address").is_in(tracked)).select(
        "block_number", "address", pl.lit(NATIVE_TOKEN).alias("token"), "amount")


def _value_moves(traces: pl.DataFrame) -> pl.DataFrame:
    """Two legs (source -amount, sink +amount) per live value-moving frame; a reward has only its sink.

    Only callType "call" moves value among calls: delegatecall/callcode run in the caller's own account and
    staticcall cannot send. A frame whose own `error` is set, or whose ancestor's is, moves nothing.
    """
    kind, call = pl.col("type"), (pl.col("type") == "call") & (pl.col("callType") == "call")
    suicide = kind.is_in(["suicide", "selfdestruct"])
    amount = pl.when(suicide).then(pl.col("balance")).otherwise(pl.col("value"))
    moving = traces.with_columns(amount.alias("amount")).filter(
        (call | (kind == "create") | suicide | (kind == "reward"))
        & pl.col("amount").is_not_null() & ~pl.col("amount").is_in(_ZERO_VALUE))
    moving = moving.filter(~_dead(moving, traces))
    source = pl.when(suicide).then(pl.col("address")).when(kind != "reward").then(pl.col("from"))
    sink = (pl.when(call).then(pl.col("to")).when(kind == "create").then(pl.col("result|address"))
            .when(suicide).then(pl.col("refundAddress")).otherwise(pl.col("author")))
    negative = pl.concat_str(pl.lit("-"), "amount").alias("amount")
    legs = [moving.select("block_number", source.alias("address"), negative),
            moving.select("block_number", sink.alias("address"), "amount")]
    # A leg without an address (a create without a result) is dropped: verification will not match.
    return pl.concat(legs).drop_nulls("address")


def _path(length: pl.Expr | int) -> pl.Expr:
    """The first `length` entries of traceAddress as a key ('0.2'): a frame's ancestors are its prefixes."""
    return pl.col("traceAddress").list.head(length).list.eval(pl.element().cast(pl.String)).list.join(".")


def _dead(frames: pl.DataFrame, traces: pl.DataFrame) -> pl.Series:
    """For each of `frames`: did it, or an ancestor in its transaction, fail (in `traces`)?"""
    keys = ["block_number", "tx", "key"]
    failed = traces.filter(pl.col("error").is_not_null()).select(
        "block_number", "tx", _path(pl.col("traceAddress").list.len()).alias("key"))
    if failed.is_empty() or frames.is_empty():
        return pl.Series("dead", [False] * frames.height, pl.Boolean)
    prefixes = (frames.with_row_index("i")
                .with_columns(pl.int_ranges(0, pl.col("traceAddress").list.len() + 1).alias("n")).explode("n")
                .select("i", "block_number", "tx", _path(pl.col("n")).alias("key")))
    dead = prefixes.join(failed.unique(), on=keys, how="semi").select("i").unique()
    return frames.with_row_index("i").join(dead.with_columns(dead=pl.lit(True)), on="i", how="left",
                                           maintain_order="left")["dead"].fill_null(False)


def _gas(receipts: pl.DataFrame, headers: pl.DataFrame) -> pl.DataFrame | None:
    """Senders pay gas_used x effective_gas_price (+ blob gas); the miner earns the priority part.

    Pre-London blocks have no base fee: the whole price goes to the miner. A receipt without a gas price
    (some nodes' old blocks) makes ether underivable here (None), never guessed.
    """
    wide = lambda col: quantity(col).cast(pl.Int128)  # noqa: E731 - products of two int64 fit in int128
    base = headers.select("block_number", "miner", wide("baseFeePerGas").fill_null(0).alias("base"))
    tx = receipts.join(base, on="block_number", how="left").select(
        "block_number", "from", "miner", "base", wide("gasUsed").alias("gas"),
        wide("effectiveGasPrice").alias("price"),
        (wide("blobGasUsed").fill_null(0) * wide("blobGasPrice").fill_null(0)).alias("blob"))
    if tx.select(pl.any_horizontal(pl.col("gas", "price", "from").is_null()).any()).item():
        return None
    paid = tx.select("block_number", pl.col("from").alias("address"),
                     pl.concat_str(pl.lit("-"), (pl.col("gas") * pl.col("price") + pl.col("blob")).cast(pl.String))
                     .alias("amount"))
    tip = ((pl.col("price") - pl.col("base")) * pl.col("gas")).sum().cast(pl.String).alias("amount")
    tips = tx.group_by("block_number", "miner").agg(tip).rename({"miner": "address"})
    return pl.concat([paid, tips.drop_nulls("address")])


def _withdrawals(headers: pl.DataFrame) -> pl.DataFrame:
    """EIP-4895 withdrawals credit `amount` gwei to `address` with no transaction and no trace."""
    rows = (headers.select("block_number", "withdrawals").explode("withdrawals").drop_nulls("withdrawals")
            .unnest("withdrawals"))
    return rows.select("block_number", "address",
                       (quantity("amount").cast(pl.Int128) * GWEI).cast(pl.String).alias("amount"))


def fold(deltas: pl.DataFrame, start: dict[tuple[str, str], tuple[int, int | None]]):
    """Running balance of each pair from its (block, value) start: rows (block, address, token, hex) at each
    later delta block, and each pair's final value (None: underivable - no start value, or below zero).

    Python ints keep uint256 sums exact; it runs once per changed (pair, block), far fewer than node calls.
    """
    groups = (deltas.group_by("address", "token", "block_number").agg("amount")
              .sort("address", "token", "block_number"))
    final, rows = {pair: value for pair, (_, value) in start.items()}, []
    for address, token, block, amounts in groups.iter_rows():
        pair = (address, token)
        value = final.get(pair)
        if value is None or block <= start[pair][0]:
            continue
        value += sum(int(a, 0) for a in amounts)
        final[pair] = value if value >= 0 else None
        rows.append((block, address, token, hex(value)))
    return rows, final


# -- confirmation: historical reads ----------------------------------------------------------------------
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


def read_raw(ctx: Context, keys: pl.DataFrame) -> pl.DataFrame:
    """`keys` (block_number, address, token) plus `raw`: the node's hex balance there, or null.

    A 32-byte ABI word (eth_call) or a quantity (eth_getBalance): both are hex integers for `uint256_frame`.
    """
    keys = keys.select("block_number", "address", "token")
    calls = [balance_call(a, t, b) for b, a, t in keys.iter_rows()]
    chunks = ctx.client.map(calls, _parse_balances)
    return keys.with_columns(pl.Series("raw", [v for chunk in chunks for v in chunk], pl.String))


# -- collect ---------------------------------------------------------------------------------------------
def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    """Anchors from the node, later rows derived and verified; unverified pairs read exactly."""
    return _collect(ctx, blocks, derive=bool(ctx.options.get("balances_derive", True)))


def collect_exact(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    """The exact path for every pair: a historical read at every candidate block (the reference)."""
    return _collect(ctx, blocks, derive=False)


def _collect(ctx: Context, blocks: BlockRange, derive: bool) -> pl.DataFrame:
    """Anchors and (to verify) last-block values read at once with the evidence; rows as raw hex until the
    one uint256 conversion, so derived and read values become identical decimals and floats."""
    pairs = _pairs(ctx)
    ends = sorted({blocks.first, blocks.last if derive else blocks.first})
    ends = pairs.join(pl.DataFrame({"block_number": ends}, schema={"block_number": pl.Int64}), how="cross")
    seen, known = in_parallel(lambda: gather(ctx, blocks), lambda: read_raw(ctx, ends))
    anchors = known.filter(pl.col("block_number") == blocks.first)
    candidates = pl.concat([_candidates(ctx, blocks, seen), deploy_candidates(ctx, blocks, anchors)]).unique()
    candidates = candidates.sort("address", "token", "block_number")
    derived, good = derive_rows(ctx, blocks, seen, known, candidates) if derive else (anchors.clear(), set())
    exact = read_raw(ctx, _only(candidates, pairs.join(_frame(good), on=["address", "token"], how="anti")))
    rows = pl.concat([anchors, derived, exact])
    return normalize(uint256_frame(rows, "raw", "balance").drop("raw")).select(BALANCES.names)


def derive_rows(ctx: Context, blocks: BlockRange, seen: Evidence, known: pl.DataFrame, candidates: pl.DataFrame):
    """Rows after the first block for the pairs whose derived last balance equals the node's (`known` holds
    the node's values at the first and last block), and the set of those pairs. The others are logged and
    left to the exact path.
    """
    value = {(a, t, b): hex_to_int(raw) for b, a, t, raw in known.iter_rows()}
    tracked, native = list(ctx.addresses), native_deltas(seen, list(ctx.addresses))
    deltas = pl.concat([token_deltas(seen.logs, tracked), *([native] if native is not None else [])])
    start = {(a, t): (blocks.first, value[(a, t, blocks.first)]) for a, t in _pairs(ctx).iter_rows()
             if t != NATIVE_TOKEN or native is not None}
    late = _late_anchors(ctx, candidates, start)
    start.update({(a, t): (b, hex_to_int(raw)) for b, a, t, raw in late.iter_rows()})
    rows, final = fold(deltas, start)
    good = {pair for pair, v in final.items() if v is not None and v == value[(*pair, blocks.last)]}
    _log_fallback(blocks, set(_pairs(ctx).iter_rows()) - good, final)
    derived = pl.concat([late, pl.DataFrame(rows, schema=list(late.schema.items()), orient="row")])
    return _only(derived, _frame(good)), good


def _late_anchors(ctx: Context, candidates: pl.DataFrame, start: dict) -> pl.DataFrame:
    """A token not deployed (null balance) at the first block: start from its first candidate block instead.

    The exact path reads that block too, so both paths agree; still null there means underivable.
    """
    missing = _frame(pair for pair, (_, value) in start.items() if value is None)
    return read_raw(ctx, _only(candidates, missing).group_by("address", "token").agg(pl.col("block_number").min()))


def _frame(pairs) -> pl.DataFrame:
    return pl.DataFrame(list(pairs), schema={"address": pl.String, "token": pl.String}, orient="row")


def _only(frame: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` whose (address, token) is one of `pairs`."""
    return frame.join(pairs, on=["address", "token"], how="semi")


def _log_fallback(blocks: BlockRange, pairs: set, final: dict) -> None:
    """Say which pairs are read exactly, and why: a mismatch is worth a warning, the rest is routine."""
    mismatched = sorted(p for p in pairs if final.get(p) is not None)
    other = sorted(pairs - set(mismatched))
    if mismatched:
        log.warning("balances %d..%d: derived balance differs from the node for %d pair(s), read exactly "
                    "instead: %s", blocks.first, blocks.last, len(mismatched), _names(mismatched))
    if other:
        log.info("balances %d..%d: %d pair(s) not derivable (null balance, no traces/receipts, below zero), "
                 "read exactly: %s", blocks.first, blocks.last, len(other), _names(other))


def _names(pairs: list) -> str:
    return ", ".join(f"{a}/{'ETH' if t == NATIVE_TOKEN else t}" for a, t in pairs)


def _candidates(ctx: Context, blocks: BlockRange, seen: Evidence) -> pl.DataFrame:
    """Candidate (block_number, address, token) after the first block, for the exact path."""
    native = native_candidates(ctx, blocks, seen).with_columns(pl.lit(NATIVE_TOKEN).alias("token"))
    keys = pl.concat([native.select("block_number", "address", "token"),
                      token_candidates(ctx, seen.logs).select("block_number", "address", "token")])
    return keys.filter(pl.col("block_number") > blocks.first).unique().sort("address", "token", "block_number")


def deploy_candidates(ctx: Context, blocks: BlockRange, anchors: pl.DataFrame) -> pl.DataFrame:
    """(deploy block, address, token) for the pairs of a token without code at the first block that gets
    its code in the range: balanceOf turns from null to a value there, with no log naming the holder.

    Without it the row would depend on where an ingest starts (an anchor after the deployment has the
    value, one before it has null until the next candidate), so a re-ingest from a reorg's fork, or a
    follower's one-block steps, would differ from a fresh ingest. Costs nothing when every anchor has a
    value; else two eth_getCode per such token, and a binary search over the range when it is deployed.
    """
    nulls = anchors.filter(pl.col("raw").is_null() & (pl.col("token") != NATIVE_TOKEN))
    found = [(_deploy_block(ctx, token, blocks), token) for token in sorted(set(nulls.get_column("token")))]
    deployed = pl.DataFrame([f for f in found if f[0] is not None], orient="row",
                            schema={"block_number": pl.Int64, "token": pl.String})
    return nulls.select("address", "token").join(deployed, on="token").select("block_number", "address", "token")


def _deploy_block(ctx: Context, token: str, blocks: BlockRange) -> int | None:
    """The first block after `blocks.first` at whose end `token` has code (None: none in the range, or it
    had code already, i.e. it is not a not-yet-deployed token)."""
    def has_code(block: int) -> bool:
        return len(ctx.client.call("eth_getCode", [token, hex(block)]) or "0x") > 2

    if blocks.last == blocks.first or has_code(blocks.first) or not has_code(blocks.last):
        return None
    low, high = blocks.first, blocks.last  # no code at low, code at high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if has_code(middle) else (middle, high)
    return high


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
    needs={"balance": ("eth_getBalance",), "call": ("eth_call",), "code": ("eth_getCode",), "logs": ("eth_getLogs",),
             "blocks": ("eth_getBlockByNumber",)},
    optional={"traces": ("trace_block",), "receipts": ("eth_getBlockReceipts",)},
    collect=collect, replace=replace, normalize=normalize,
    description="Exact native and ERC-20 balances of tracked addresses: anchors, then rows where they change "
                "(derived from logs/traces, verified against the node).",
)
