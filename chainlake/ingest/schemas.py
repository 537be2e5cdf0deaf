"""The Parquet schemas of the raw lake: one explicit pyarrow schema per dataset, all documented here.

Conventions (the same in every dataset, so joins never need casts):

- addresses, hashes, calldata and log data: lowercase ``0x``-prefixed hex strings (Arrow large_string);
- block numbers, timestamps, gas quantities, gas prices, nonces and indexes: ``int64`` (DuckDB BIGINT,
  polars Int64). A node value that does not fit int64 is an error, never a silent null;
- uint256 amounts (``value``, ``balance``): an exact base-10 *string* (lossless, sorts/joins exactly,
  readable in any tool; DuckDB can cast it to ``HUGEINT``/``DECIMAL(38,0)`` below 2^127) plus a ``float64``
  convenience column named ``<col>_f64`` for arithmetic where 53 bits of precision are enough
  (prices, features). Binary 32-byte columns were rejected: unreadable in SQL and in agents' frames;
- rows are sorted by the dataset's key columns; the key is unique in the lake.

| dataset      | key                                   | columns                                                          |
|--------------|---------------------------------------|------------------------------------------------------------------|
| blocks       | block_number                          | block_number, block_hash, parent_hash, timestamp, miner,         |
|              |                                       | gas_used, gas_limit, base_fee_per_gas (null before London),      |
|              |                                       | transaction_count, size, extra_data                              |
| transactions | block_number, transaction_index       | block_number, block_timestamp, transaction_index,                |
|              |                                       | transaction_hash, from_address, to_address (null: create),       |
|              |                                       | nonce, value, value_f64, input, gas_limit, gas_price,            |
|              |                                       | max_fee_per_gas, max_priority_fee_per_gas (null: legacy),        |
|              |                                       | transaction_type, chain_id (null: pre-EIP-155 legacy) and the    |
|              |                                       | receipt: status (1 ok, 0 reverted), gas_used,                    |
|              |                                       | effective_gas_price, cumulative_gas_used, contract_address,      |
|              |                                       | logs_count                                                       |
| logs         | block_number, log_index               | block_number, block_hash, transaction_index, transaction_hash,   |
|              |                                       | log_index, address, topic0..topic3 (null when absent), data      |
| traces       | block_number, trace_index             | block_number, block_hash, transaction_hash, transaction_position |
|              |                                       | (both null for reward rows), trace_index (order in the block),   |
|              |                                       | trace_address (list of int64), subtraces, type (call, create,    |
|              |                                       | suicide, reward), call_type (call, delegatecall, staticcall,     |
|              |                                       | callcode; create/create2 for creates when the node says; the     |
|              |                                       | reward type for rewards), from_address, to_address (created      |
|              |                                       | contract for creates, refund address for suicides, author for    |
|              |                                       | rewards), value, value_f64, gas, gas_used, input (init code for  |
|              |                                       | creates), output (deployed code for creates), error              |
|              |                                       | (with the debug_traceBlockByNumber fallback the top frame's      |
|              |                                       | gas_used is null: callTracer gives no exact pre-refund value)    |
| balances     | block_number, address, token          | block_number, address, token (NATIVE_TOKEN for ether),           |
|              |                                       | balance, balance_f64 (null if the token had no balanceOf)        |

Balances semantics: see `chainlake.ingest.datasets.balances`.

The mempool tables are not block-range datasets (a watcher fills them over time), but follow the same
conventions; semantics in `chainlake.ingest.mempool`:

| table                | key                     | columns                                                       |
|----------------------|-------------------------|---------------------------------------------------------------|
| mempool_observations | file, transaction_hash  | transaction_hash, from_address, nonce, to_address, value,     |
|                      |                         | value_f64, gas_limit, gas_price (legacy gasPrice, else        |
|                      |                         | maxFeePerGas), max_fee_per_gas, max_priority_fee_per_gas,     |
|                      |                         | transaction_type, input, pool (pending/queued), first_seen_ms,|
|                      |                         | last_seen_ms (watcher clock, unix ms), first_seen_head,       |
|                      |                         | last_seen_head (chain head then), sightings                   |
| mempool              | transaction_hash        | the above aggregated over all windows, plus included_block,   |
|                      |                         | included_index, delay_blocks, delay_seconds, replaced_by,     |
|                      |                         | status (included, replaced, dropped, pending)                 |
"""

from __future__ import annotations

import pyarrow as pa

# EIP-7528: the conventional address standing for the chain's native asset.
NATIVE_TOKEN = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

# large_string / large_list: what polars produces, so Arrow conversion is zero-copy (Parquet stores the same
# bytes either way; DuckDB and polars read them as VARCHAR / String).
I64, STR, F64 = pa.int64(), pa.large_string(), pa.float64()


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


BLOCKS = _schema(
    ("block_number", I64), ("block_hash", STR), ("parent_hash", STR), ("timestamp", I64), ("miner", STR),
    ("gas_used", I64), ("gas_limit", I64), ("base_fee_per_gas", I64), ("transaction_count", I64),
    ("size", I64), ("extra_data", STR),
)

TRANSACTIONS = _schema(
    ("block_number", I64), ("block_timestamp", I64), ("transaction_index", I64), ("transaction_hash", STR),
    ("from_address", STR), ("to_address", STR), ("nonce", I64), ("value", STR), ("value_f64", F64),
    ("input", STR), ("gas_limit", I64), ("gas_price", I64), ("max_fee_per_gas", I64),
    ("max_priority_fee_per_gas", I64), ("transaction_type", I64), ("chain_id", I64),
    ("status", I64), ("gas_used", I64), ("effective_gas_price", I64), ("cumulative_gas_used", I64),
    ("contract_address", STR), ("logs_count", I64),
)

LOGS = _schema(
    ("block_number", I64), ("block_hash", STR), ("transaction_index", I64), ("transaction_hash", STR),
    ("log_index", I64), ("address", STR), ("topic0", STR), ("topic1", STR), ("topic2", STR), ("topic3", STR),
    ("data", STR),
)

TRACES = _schema(
    ("block_number", I64), ("block_hash", STR), ("transaction_hash", STR), ("transaction_position", I64),
    ("trace_index", I64), ("trace_address", pa.large_list(I64)), ("subtraces", I64), ("type", STR),
    ("call_type", STR), ("from_address", STR), ("to_address", STR), ("value", STR), ("value_f64", F64),
    ("gas", I64), ("gas_used", I64), ("input", STR), ("output", STR), ("error", STR),
)

BALANCES = _schema(
    ("block_number", I64), ("address", STR), ("token", STR), ("balance", STR), ("balance_f64", F64),
)

MEMPOOL_OBSERVATIONS = _schema(
    ("transaction_hash", STR), ("from_address", STR), ("nonce", I64), ("to_address", STR), ("value", STR),
    ("value_f64", F64), ("gas_limit", I64), ("gas_price", I64), ("max_fee_per_gas", I64),
    ("max_priority_fee_per_gas", I64), ("transaction_type", I64), ("input", STR), ("pool", STR),
    ("first_seen_ms", I64), ("last_seen_ms", I64), ("first_seen_head", I64), ("last_seen_head", I64),
    ("sightings", I64),
)

MEMPOOL = _schema(
    *[(field.name, field.type) for field in MEMPOOL_OBSERVATIONS if field.name != "pool"],
    ("included_block", I64), ("included_index", I64), ("delay_blocks", I64), ("delay_seconds", F64),
    ("replaced_by", STR), ("status", STR),
)

SCHEMAS: dict[str, pa.Schema] = {
    "blocks": BLOCKS, "transactions": TRANSACTIONS, "logs": LOGS, "traces": TRACES, "balances": BALANCES,
}
