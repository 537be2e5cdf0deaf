"""The Parquet schemas of the decoded lake: one explicit pyarrow schema per decoded table, documented here.

Decoded tables follow the raw lake's conventions (`chainlake.ingest.schemas`): lowercase ``0x`` hex
addresses and hashes, int64 block numbers, indexes and gas prices, and every uint256/int256 value as an
exact base-10 string. Amount naming, as in Dune's `dex.trades`:

- ``<x>_raw``: the exact on-chain integer (base-10 string; signed for int256), with ``<x>_raw_f64``
  (float64) beside it;
- ``<x>``: the decimal-adjusted float64 (raw / 10^decimals); null when the token's decimals are unknown;
- ``block_time``: the block's timestamp as a UTC timestamp (microseconds, DuckDB TIMESTAMPTZ).

The block-range tables are partitioned exactly like the raw lake
(``LAKE/<table>/block_partition=<key>/data.parquet``), sorted by their key, key unique. The metadata
tables are single files read once per contract over `eth_call` (`chainlake.decode.metadata`).

| table            | key                      | columns                                                           |
|------------------|--------------------------|-------------------------------------------------------------------|
| erc20_transfers  | block_number, log_index  | block_number, block_time, transaction_hash, transaction_index,    |
|                  |                          | log_index, token, from_address, to_address, amount_raw,           |
|                  |                          | amount_raw_f64, amount, symbol                                    |
| dex_swaps        | block_number, log_index  | block_number, block_time, transaction_hash, transaction_index,    |
|                  |                          | log_index, pool, protocol (uniswap_v2, uniswap_v3), token_bought, |
|                  |                          | token_sold, token_bought_symbol, token_sold_symbol,               |
|                  |                          | token_bought_amount_raw (+_f64), token_sold_amount_raw (+_f64),   |
|                  |                          | token_bought_amount, token_sold_amount, price (token_sold_amount  |
|                  |                          | / token_bought_amount: units of the sold token paid per unit of   |
|                  |                          | the bought token, decimal-adjusted), sender (the Swap's sender,   |
|                  |                          | usually a router), recipient (the Swap's to/recipient), tx_from,  |
|                  |                          | tx_to, gas_price, effective_gas_price, and V3 only (null for V2): |
|                  |                          | sqrt_price_x96, liquidity (exact strings), tick; fee (the pool's  |
|                  |                          | fee in millionths, from `pools`: V3 only); amount_usd (the USD    |
|                  |                          | stablecoin side's amount, null when neither side is one: see      |
|                  |                          | `chainlake.decode.prices`)                                        |
| pool_reserves    | block_number, pool       | block_number, block_time, pool, log_index (of the Sync kept),     |
|                  |                          | token0, token1, reserve0_raw (+_f64), reserve1_raw (+_f64),       |
|                  |                          | reserve0, reserve1 (adjusted), mid_price (reserve1 / reserve0,    |
|                  |                          | adjusted: token1 per token0)                                      |
| liquidity_events | block_number, log_index  | block_number, block_time, transaction_hash, transaction_index,    |
|                  |                          | log_index, pool, protocol, kind (mint, burn), provider (V3: the   |
|                  |                          | position owner; V2: tx_from), sender (the event's sender, null    |
|                  |                          | for V3 Burn), owner (V3), recipient (V2 Burn's to), token0,       |
|                  |                          | token1, amount0_raw (+_f64), amount1_raw (+_f64), amount0,        |
|                  |                          | amount1, liquidity_raw (V3 amount of liquidity), tick_lower,      |
|                  |                          | tick_upper (V3), tx_from                                          |
| mev_sandwiches   | block_number,            | one row per (front-run, victim, back-run): block_number,          |
|                  | front_log_index,         | block_time, pool, protocol, attacker (front-run's tx sender),     |
|                  | victim_log_index         | attacker_recipient (its swap recipient), victims (count in the    |
|                  |                          | sandwich), {front,victim,back}_transaction_hash,                  |
|                  |                          | _transaction_index, _log_index, victim_from, token_sold,          |
|                  |                          | token_bought (the front-run's; the victims' too), their symbols,  |
|                  |                          | {front,victim,back}_{sold,bought}_amount_raw (+_f64), profit_raw  |
|                  |                          | (+_f64: back bought - front sold, signed, in token_sold), profit  |
|                  |                          | (adjusted), gas_cost_wei (+_f64: gas_used x effective_gas_price   |
|                  |                          | of front and back). Sandwich-level columns repeat per victim      |
| tokens           | token                    | token, decimals (null: no decimals()), symbol (null: none; a      |
|                  |                          | bytes32 symbol, as MKR's, is decoded as text)                     |
| pools            | pool                     | pool, protocol, token0, token1 (null when token0()/token1() fail) |
|                  |                          | fee: the pool's fee in millionths (Uniswap's unit, 3000 = 0.3%),  |
|                  |                          | from fee() on V3 pools; null for the V2 ABI, which has no fee()   |
|                  |                          | (Uniswap V2 and the devnet charge 3000; forks differ)             |

`mempool_swaps` is derived from the (unpartitioned) `mempool` table, one file rebuilt whole
(``LAKE/mempool_swaps/data.parquet``; semantics in `chainlake.decode.mempool_swaps`):

| table            | key                      | columns                                                           |
|------------------|--------------------------|-------------------------------------------------------------------|
| mempool_swaps    | transaction_hash         | transaction_hash, from_address, nonce, router (the tx's to),      |
|                  |                          | function (router function name), exact_in, amount_in_raw,         |
|                  |                          | amount_out_min_raw (exact-in), amount_out_raw, amount_in_max_raw  |
|                  |                          | (exact-out), each +_f64 and null when not the function's (ETH-in: |
|                  |                          | from the tx value), path (list of token addresses), token_in,     |
|                  |                          | token_out, recipient, deadline (int64; null if wider), gas_price, |
|                  |                          | max_priority_fee_per_gas, first_seen_ms, first_seen_head,         |
|                  |                          | last_seen_head (the chain head at the last sighting),             |
|                  |                          | included_block, included_index, delay_blocks, delay_seconds,      |
|                  |                          | status (from `mempool`)                                           |

Swap direction (Dune spellbook's rule, so numbers match `dex.trades`): V2: bought = token0 when
amount0Out > 0 (else token1), sold = token1 when amount0In = 0 or amount1Out = 0 (else token0); V3
(amounts from the pool's side): bought = token0 when amount0 < 0 (else token1), the other is sold.

`pool_reserves` is a *state table*: one row per (pool, block in which its reserves changed), holding the
reserves after that block (the last `Sync` of the block wins). A value holds until the pool's next row;
`chainlake.decode.reserves.forward_fill` spreads it onto any block grid.
"""

from __future__ import annotations

import pyarrow as pa

from chainlake.ingest.schemas import F64, I64, STR

TIME = pa.timestamp("us", tz="UTC")


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype) for name, dtype in fields])


def _amount(name: str) -> list[tuple[str, pa.DataType]]:
    return [(f"{name}_raw", STR), (f"{name}_raw_f64", F64)]


_POSITION = [("block_number", I64), ("block_time", TIME), ("transaction_hash", STR), ("transaction_index", I64),
             ("log_index", I64)]

ERC20_TRANSFERS = _schema(
    *_POSITION, ("token", STR), ("from_address", STR), ("to_address", STR), *_amount("amount"), ("amount", F64),
    ("symbol", STR),
)

DEX_SWAPS = _schema(
    *_POSITION, ("pool", STR), ("protocol", STR), ("token_bought", STR), ("token_sold", STR),
    ("token_bought_symbol", STR), ("token_sold_symbol", STR),
    *_amount("token_bought_amount"), *_amount("token_sold_amount"),
    ("token_bought_amount", F64), ("token_sold_amount", F64), ("price", F64),
    ("sender", STR), ("recipient", STR), ("tx_from", STR), ("tx_to", STR), ("gas_price", I64),
    ("effective_gas_price", I64), ("sqrt_price_x96", STR), ("liquidity", STR), ("tick", I64), ("fee", I64),
    ("amount_usd", F64),
)

POOL_RESERVES = _schema(
    ("block_number", I64), ("block_time", TIME), ("pool", STR), ("log_index", I64), ("token0", STR),
    ("token1", STR), *_amount("reserve0"), *_amount("reserve1"), ("reserve0", F64), ("reserve1", F64),
    ("mid_price", F64),
)

LIQUIDITY_EVENTS = _schema(
    *_POSITION, ("pool", STR), ("protocol", STR), ("kind", STR), ("provider", STR), ("sender", STR),
    ("owner", STR), ("recipient", STR), ("token0", STR), ("token1", STR),
    *_amount("amount0"), *_amount("amount1"), ("amount0", F64), ("amount1", F64),
    ("liquidity_raw", STR), ("tick_lower", I64), ("tick_upper", I64), ("tx_from", STR),
)

TOKENS = _schema(("token", STR), ("decimals", I64), ("symbol", STR))

POOLS = _schema(("pool", STR), ("protocol", STR), ("token0", STR), ("token1", STR), ("fee", I64))

MEV_SANDWICHES = _schema(
    ("block_number", I64), ("block_time", TIME), ("pool", STR), ("protocol", STR), ("attacker", STR),
    ("attacker_recipient", STR), ("victims", I64),
    *[(f"{leg}_{col}", dtype) for leg in ("front", "victim", "back")
      for col, dtype in (("transaction_hash", STR), ("transaction_index", I64), ("log_index", I64))],
    ("victim_from", STR),
    ("token_sold", STR), ("token_bought", STR), ("token_sold_symbol", STR), ("token_bought_symbol", STR),
    *_amount("front_sold_amount"), *_amount("front_bought_amount"), *_amount("back_sold_amount"),
    *_amount("back_bought_amount"), *_amount("victim_sold_amount"), *_amount("victim_bought_amount"),
    *_amount("profit"), ("profit", F64), ("gas_cost_wei", STR), ("gas_cost_wei_f64", F64),
)

MEMPOOL_SWAPS = _schema(
    ("transaction_hash", STR), ("from_address", STR), ("nonce", I64), ("router", STR), ("function", STR),
    ("exact_in", pa.bool_()), *_amount("amount_in"), *_amount("amount_out_min"), *_amount("amount_out"),
    *_amount("amount_in_max"), ("path", pa.large_list(STR)), ("token_in", STR), ("token_out", STR),
    ("recipient", STR), ("deadline", I64), ("gas_price", I64), ("max_priority_fee_per_gas", I64),
    ("first_seen_ms", I64), ("first_seen_head", I64), ("last_seen_head", I64), ("included_block", I64),
    ("included_index", I64),
    ("delay_blocks", I64), ("delay_seconds", F64), ("status", STR),
)

# Block-range tables (their keys live with each table: `chainlake.decode.TABLES[name].keys`) and metadata tables.
DECODED_SCHEMAS: dict[str, pa.Schema] = {
    "erc20_transfers": ERC20_TRANSFERS, "dex_swaps": DEX_SWAPS, "pool_reserves": POOL_RESERVES,
    "liquidity_events": LIQUIDITY_EVENTS, "mev_sandwiches": MEV_SANDWICHES,
}
# Derived from the (unpartitioned) mempool table: one file, rebuilt whole.
MEMPOOL_DERIVED_SCHEMAS: dict[str, pa.Schema] = {"mempool_swaps": MEMPOOL_SWAPS}
METADATA_SCHEMAS: dict[str, pa.Schema] = {"tokens": TOKENS, "pools": POOLS}
