"""Decoded tables: the raw lake's logs turned into market tables (rpc -> raw -> decoded, one way).

Public API::

    decode(lake_dir, blocks, tables=None, *, rpc_url=None, ...) -> DecodeReport
    TABLES                          name -> DecodedTable (schema, key, raw datasets read, build)
    forward_fill(state, grid, on="block_number", by="pool")    state table -> values at a block grid
    reserves_at(lake_dir, blocks, pools=None)                   pool reserves in force at each block
    Metadata(lake_dir, client_factory).tokens(addresses) / .pools({pool: protocol})   eth_call, cached
    abi.EVENTS / abi.decode_event(logs, event)                  event ABIs and the vectorized decoder
    abi.ROUTER_SWAPS / build_mempool_swaps(lake_dir)            router swap calldata; LAKE/mempool_swaps

Modules: `abi` (event ABIs, topic0 constants, decoders), `schemas` (every decoded schema, documented),
`metadata` (tokens and pools over eth_call, the only node access), one module per table (`transfers`,
`swaps`, `reserves`, `liquidity`, `sandwiches`), `pipeline` (partition by partition, with the lake's writer),
`mempool_swaps` (pending router swaps decoded from the unpartitioned `mempool` table).
"""

from chainlake.decode.mempool_swaps import build_mempool_swaps
from chainlake.decode.metadata import Metadata
from chainlake.decode.pipeline import TABLES, DecodeReport, decode, resolve_tables
from chainlake.decode.reserves import forward_fill, reserves_at
from chainlake.decode.schemas import DECODED_SCHEMAS

__all__ = ["DECODED_SCHEMAS", "DecodeReport", "Metadata", "TABLES", "build_mempool_swaps", "decode", "forward_fill",
           "reserves_at", "resolve_tables"]
