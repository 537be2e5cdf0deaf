"""traces: flat parity-style call traces, one row per call / create / suicide / reward.

Source: `trace_block` (parity style, parsed natively). Nodes without it (geth) are read with
`debug_traceBlockByNumber` + callTracer, whose nested frames are flattened here into the same rows:
depth-first order, `trace_address` = path of child indexes, `subtraces` = number of children.
Known differences of the fallback, inherent to callTracer:
- the top call's `gas_used` is null. parity's value is the gas the execution spent before refunds, which
  callTracer does not give: geth reports the receipt's gasUsed there (intrinsic gas included, refunds
  deducted) and anvil 1.7.1 the block's *cumulative* gas. The receipt's gasUsed minus the intrinsic gas
  is still off by the refund (measured on anvil: a call that clears a storage slot), so no exact value
  can be derived. The transaction's total is the transactions dataset's `gas_used` (from its receipt).
- the top call's `gas` is the node's: on revm-based nodes (anvil, tested against trace_block) it equals
  parity's (intrinsic gas excluded); geth's callTracer reports the transaction's gas limit instead.
- `error` uses geth's wording ("execution reverted" vs "Reverted"), and there are no reward rows.
Inner frames match trace_block exactly (tests/test_ingest.py::test_debug_trace_fallback_gives_the_same_rows).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from chainlake.errors import NodeError
from chainlake.ingest.convert import checked, flexible_quantity, quantity, uint256_frame
from chainlake.ingest.dataset import Context, Dataset, batch_size, block_calls, concat, with_block_numbers
from chainlake.ingest.ranges import BlockRange
from chainlake.ingest.schemas import TRACES

ACTION = pl.Struct({
    "from": pl.String, "to": pl.String, "value": pl.String, "gas": pl.String, "input": pl.String,
    "callType": pl.String, "init": pl.String, "creationMethod": pl.String, "address": pl.String,
    "refundAddress": pl.String, "balance": pl.String, "author": pl.String, "rewardType": pl.String,
})
RESULT = pl.Struct({"gasUsed": pl.String, "output": pl.String, "address": pl.String, "code": pl.String})
TRACE = pl.Struct({
    "action": ACTION, "result": RESULT, "error": pl.String, "subtraces": pl.Int64,
    "traceAddress": pl.List(pl.Int64), "transactionHash": pl.String, "transactionPosition": pl.String,
    "blockHash": pl.String, "type": pl.String,
})
BATCH = 10  # blocks per request (see dataset.batch_size)


def convert_parity(frame: pl.DataFrame, blocks: BlockRange) -> pl.DataFrame:
    """trace_block answers -> rows of the traces schema.

    Type-dependent fields map to common columns with `coalesce`: each trace type fills only its own
    action/result fields (call: to/input/output, create: init/result.address/code, suicide:
    address/refundAddress/balance, reward: author/rewardType), the others are null.
    """
    if frame["result"].null_count():
        raise NodeError("trace_block returned nothing for a requested block")
    raw = (with_block_numbers(frame, blocks)
           .select("block_number", "result").explode("result").filter(pl.col("result").is_not_null())
           .unnest("result").unnest("action").unnest("result", separator="|"))
    out = raw.select(
        "block_number", pl.col("blockHash").alias("block_hash"), pl.col("transactionHash").alias("transaction_hash"),
        flexible_quantity("transactionPosition").alias("transaction_position"),
        pl.int_range(pl.len(), dtype=pl.Int64).over("block_number").alias("trace_index"),
        pl.col("traceAddress").alias("trace_address"), "subtraces",
        pl.col("type").replace("selfdestruct", "suicide"),
        pl.coalesce("callType", "creationMethod", "rewardType").alias("call_type"),
        pl.coalesce("from", "address").alias("from_address"),
        pl.coalesce("to", "result|address", "refundAddress", "author").alias("to_address"),
        pl.coalesce("value", "balance").alias("value_hex"),
        quantity("gas").alias("gas"), quantity("result|gasUsed").alias("gas_used"),
        pl.coalesce("input", "init").alias("input"),
        pl.coalesce("result|output", "result|code").alias("output"),
        "error",
    )
    out = checked(out, raw, {"gas": "gas", "gas_used": "result|gasUsed"}, "traces",
                  lower=["block_hash", "transaction_hash", "from_address", "to_address"])
    return uint256_frame(out, "value_hex", "value").drop("value_hex")


# -- debug_traceBlockByNumber (callTracer) fallback ----------------------------------------------------
def flatten_call_frames(block: int, block_hash: str | None, tx_hashes: list[str], answers: list[Any]) -> list[dict]:
    """Flatten one block's callTracer answers into parity-style row dicts, depth first."""
    rows: list[dict] = []
    for position, answer in enumerate(answers):
        if not isinstance(answer, dict) or "result" not in answer:
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise NodeError(f"debug_traceBlockByNumber could not trace a transaction of block {block}: {error}")
        tx_hash = answer.get("txHash") or (tx_hashes[position] if position < len(tx_hashes) else None)
        stack = [(answer["result"], [])]
        while stack:
            node, address = stack.pop()
            children = node.get("calls") or []
            rows.append(_frame_row(node, block, block_hash, tx_hash, position, address, len(children), len(rows)))
            stack.extend((child, address + [i]) for i, child in reversed(list(enumerate(children))))
    return rows


def _frame_row(node: dict, block: int, block_hash, tx_hash, position: int, address: list[int], n_children: int,
               index: int) -> dict:
    kind = (node.get("type") or "CALL").upper()
    is_create = kind.startswith("CREATE")
    trace_type = "create" if is_create else "suicide" if kind == "SELFDESTRUCT" else "call"
    call_type = kind.lower() if trace_type != "suicide" else None
    return {
        "block_number": block, "block_hash": block_hash, "transaction_hash": tx_hash,
        "transaction_position": position, "trace_index": index, "trace_address": address,
        "subtraces": n_children, "type": trace_type, "call_type": call_type,
        "from_address": node.get("from") or None, "to_address": node.get("to") or None,  # lowercased in collect_debug
        "value_hex": node.get("value") or "0x0", "gas": node.get("gas"),
        "gas_used": node.get("gasUsed") if address else None,  # top call: not parity's value (module doc)
        "input": node.get("input") if trace_type != "suicide" else None,
        "output": _output(node, trace_type), "error": node.get("error"),
    }


def _output(node: dict, trace_type: str) -> str | None:
    """parity's output: none for suicides; '0x' when a frame returned nothing (callTracer omits the
    field then); revert data is kept, as anvil's trace_block does."""
    if trace_type == "suicide":
        return None
    return node.get("output") or "0x"


def collect_debug(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    """Fallback path: callTracer per block (orjson + Python flattening: slower, but only for such nodes)."""
    calls = block_calls("debug_traceBlockByNumber", blocks, {"tracer": "callTracer"})
    traced = ctx.client.batch(calls)
    headers = ctx.client.batch(block_calls("eth_getBlockByNumber", blocks, False))
    rows: list[dict] = []
    for block, answers, header in zip(blocks.numbers(), traced, headers):
        if header is None:
            raise NodeError(f"eth_getBlockByNumber returned no block {block}")
        rows += flatten_call_frames(block, header.get("hash"), header.get("transactions") or [], answers or [])
    return rows_to_frame(rows)


def rows_to_frame(rows: list[dict]) -> pl.DataFrame:
    """Flattened callTracer rows -> rows of the traces schema (quantities checked, hex lowercased)."""
    schema = dict(_DEBUG_SCHEMA)
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    out = frame.with_columns(quantity("gas").alias("gas"), quantity("gas_used").alias("gas_used"))
    out = checked(out, frame, {"gas": "gas", "gas_used": "gas_used"}, "traces",
                  lower=["block_hash", "transaction_hash", "from_address", "to_address"])
    return uint256_frame(out, "value_hex", "value").drop("value_hex")


_DEBUG_SCHEMA = {
    "block_number": pl.Int64, "block_hash": pl.String, "transaction_hash": pl.String,
    "transaction_position": pl.Int64, "trace_index": pl.Int64, "trace_address": pl.List(pl.Int64),
    "subtraces": pl.Int64, "type": pl.String, "call_type": pl.String, "from_address": pl.String,
    "to_address": pl.String, "value_hex": pl.String, "gas": pl.String, "gas_used": pl.String,
    "input": pl.String, "output": pl.String, "error": pl.String,
}


def collect(ctx: Context, blocks: BlockRange) -> pl.DataFrame:
    if ctx.methods["traces"] == "trace_block":
        frames = ctx.client.frames(block_calls("trace_block", blocks), pl.List(TRACE), batch_size(ctx, BATCH))
        return convert_parity(concat(frames, pl.List(TRACE)), blocks)
    return collect_debug(ctx, blocks)


DATASET = Dataset(
    name="traces", schema=TRACES, keys=("block_number", "trace_index"),
    needs={"traces": ("trace_block", "debug_traceBlockByNumber")},
    collect=collect,
    description="Flat parity-style call traces (trace_block, or debug_traceBlockByNumber callTracer flattened).",
)
