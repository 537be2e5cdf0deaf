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
|                  |                          | sqrt_price_x96, liquidity (exact strings), tick                   |
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
| tokens           | token                    | token, decimals (null: no decimals()), symbol (null: none; a      |
|                  |                          | bytes32 symbol, as MKR's, is decoded as text)                     |
| pools            | pool                     | pool, protocol, token0, token1 (null when token0()/token1() fail) |

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
    ("effective_gas_price", I64), ("sqrt_price_x96", STR), ("liquidity", STR), ("tick", I64),
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

POOLS = _schema(("pool", STR), ("protocol", STR), ("token0", STR), ("token1", STR))

# Block-range tables (their keys live with each table: `chainlake.decode.TABLES[name].keys`) and metadata tables.
DECODED_SCHEMAS: dict[str, pa.Schema] = {
    "erc20_transfers": ERC20_TRANSFERS, "dex_swaps": DEX_SWAPS, "pool_reserves": POOL_RESERVES,
    "liquidity_events": LIQUIDITY_EVENTS,
}
METADATA_SCHEMAS: dict[str, pa.Schema] = {"tokens": TOKENS, "pools": POOLS}
