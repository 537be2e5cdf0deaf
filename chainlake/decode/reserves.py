"""pool_reserves: Uniswap V2 `Sync` logs as a forward-filled state table.

One row per (pool, block in which its reserves changed): the reserves after that block (the block's
last `Sync` wins; `log_index` says which). The value holds until the pool's next row, so the state at
any block is the latest row at or before it: `forward_fill` (and `reserves_at` over the lake) do that
with a polars as-of join. `mid_price` = reserve1 / reserve0, decimal-adjusted (token1 per token0).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import polars as pl

from chainlake.decode import abi
from chainlake.decode.schemas import POOL_RESERVES
from chainlake.decode.table import DecodeContext, DecodedTable, adjusted
from chainlake.errors import ConfigError
from chainlake.ingest.convert import ENGINE
from chainlake.ingest.lake import partition_files, partition_range

PROTOCOL = "uniswap_v2"


def build(ctx: DecodeContext) -> pl.DataFrame:
    syncs = abi.decode_event(ctx.logs, abi.V2_SYNC).sort("block_number", "log_index")
    last = syncs.unique(subset=["block_number", "address"], keep="last", maintain_order=True)
    pools = ctx.metadata.pools({address: PROTOCOL for address in last.get_column("address").unique().to_list()})
    tokens = ctx.metadata.tokens(pools.get_column("token0").to_list() + pools.get_column("token1").to_list())
    # The rest is one query (see DecodeContext)
    out = last.lazy().rename({"address": "pool", "reserve0": "reserve0_raw", "reserve0_f64": "reserve0_raw_f64",
                              "reserve1": "reserve1_raw", "reserve1_f64": "reserve1_raw_f64"})
    out = out.join(pools.lazy().select("pool", "token0", "token1"), on="pool", how="left", maintain_order="left")
    for i in (0, 1):
        decimals = tokens.lazy().select(pl.col("token").alias(f"token{i}"), pl.col("decimals").alias(f"decimals{i}"))
        out = out.join(decimals, on=f"token{i}", how="left", maintain_order="left")
    out = out.with_columns(adjusted("reserve0_raw_f64", "decimals0").alias("reserve0"),
                           adjusted("reserve1_raw_f64", "decimals1").alias("reserve1"))
    out = out.with_columns(pl.when(pl.col("reserve0") > 0).then(pl.col("reserve1") / pl.col("reserve0"))
                           .alias("mid_price"))
    return ctx.with_block_time(out).collect(engine=ENGINE)


def forward_fill(state: pl.DataFrame, grid: pl.DataFrame | Iterable[int], *, on: str = "block_number",
                 by: str = "pool") -> pl.DataFrame:
    """The state in force at each grid row: for each (`by`, `on`) of `grid`, the latest `state` row with
    `state.on <= grid.on` of the same `by` (null columns before the first one).

    `grid` is a frame with `on` (and optionally `by`; without it, every `by` of `state` at every block),
    or plain block numbers. The state's own block comes back as `state_<on>`. Both sides are sorted by
    `on` here and the sort is asserted: polars' join_asof silently mismatches unsorted input.
    """
    if not isinstance(grid, pl.DataFrame):
        grid = pl.DataFrame({on: list(grid)}, schema={on: pl.Int64})
    if by not in grid.columns:
        grid = grid.join(state.select(by).unique().sort(by), how="cross")
    left = grid.sort(on, by)
    right = state.with_columns(pl.col(on).alias(f"state_{on}")).sort(on, by)
    assert left.get_column(on).is_sorted() and right.get_column(on).is_sorted()
    return left.join_asof(right, on=on, by=by, strategy="backward", check_sortedness=False)


def reserves_at(lake_dir: str | Path, blocks: Iterable[int], pools: Iterable[str] | None = None) -> pl.DataFrame:
    """Each pool's reserves in force at each of `blocks` (forward-filled from the lake's pool_reserves)."""
    numbers = sorted(set(blocks))
    if not numbers:
        raise ConfigError("reserves_at: no blocks given")
    files = [str(p) for key, p in partition_files(lake_dir, "pool_reserves").items()
             if partition_range(key).first <= numbers[-1]]
    if not files:
        raise ConfigError(f"no pool_reserves in {lake_dir}: decode them first (chainlake decode)")
    state = pl.scan_parquet(files).filter(pl.col("block_number") <= numbers[-1])
    if pools is not None:
        state = state.filter(pl.col("pool").is_in(list(pools)))
    return forward_fill(state.collect(), numbers)


TABLE = DecodedTable(
    name="pool_reserves", schema=POOL_RESERVES, keys=("block_number", "pool"), reads=("logs", "blocks"),
    build=build, description="Uniswap V2 pool reserves per block where they changed (last Sync of the block), "
                             "and the decimal-adjusted mid price: a forward-filled state table.",
)
