"""The tables a feature view can read, as polars LazyFrames: lake tables, the `pool_blocks` grid, other views.

A view names its inputs (SQL: the tables its query references; polars: its parameter names):

- every lake table: the raw datasets (`blocks`, `transactions`, `logs`, `traces`, `balances`), the decoded
  ones (`erc20_transfers`, `dex_swaps`, `pool_reserves`, `liquidity_events`, `mev_sandwiches`), the mempool
  tables (`mempool_observations`, `mempool`, `mempool_swaps`) and the metadata (`tokens`, `pools`);
- `pool_blocks`: the grid "per pool per block": (pool, block_number, block_time) for every pool of
  `pool_reserves`, from its first reserves block through the last block in the lake;
- `feature_<name>`: another view's rows (entity, event block, features; the state-table bounds are left
  out on purpose, since `valid_to` is a fact from a later block).

`clip` cuts every input back to what was known at a block: the engine's causality check and the leakage
tests compare a view computed on clipped inputs with the same view computed on everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl
import pyarrow as pa

from chainlake.decode.schemas import DECODED_SCHEMAS, MEMPOOL_DERIVED_SCHEMAS, METADATA_SCHEMAS
from chainlake.errors import ConfigError
from chainlake.ingest.schemas import MEMPOOL, MEMPOOL_OBSERVATIONS, SCHEMAS

LAKE_SCHEMAS: dict[str, pa.Schema] = {
    **SCHEMAS, **DECODED_SCHEMAS, **METADATA_SCHEMAS, **MEMPOOL_DERIVED_SCHEMAS,
    "mempool_observations": MEMPOOL_OBSERVATIONS, "mempool": MEMPOOL,
}
GRID = "pool_blocks"
FEATURE_PREFIX = "feature_"
STATE_BOUNDS = ("valid_from", "valid_to")
# Tables whose rows carry the block they belong to: clipping keeps block_number <= the cut.
BLOCK_TABLES = frozenset(SCHEMAS) | frozenset(DECODED_SCHEMAS)
STATIC_TABLES = frozenset(METADATA_SCHEMAS)  # read from contracts once, constant over blocks
PENDING_TABLES = frozenset({"mempool", "mempool_swaps"})
INCLUSION_COLUMNS = ("included_block", "included_index", "delay_blocks", "delay_seconds")


def is_input(name: str, feature_names: Iterable[str]) -> bool:
    """Whether a view may read `name`."""
    if name.startswith(FEATURE_PREFIX) and name[len(FEATURE_PREFIX):] in set(feature_names):
        return True
    return name in LAKE_SCHEMAS or name == GRID


def scan_lake_table(lake_dir: str | Path, name: str) -> pl.LazyFrame:
    """One lake table over all its Parquet files (temp files skipped); empty, with its schema, if none yet."""
    folder = Path(lake_dir) / name
    files = sorted(str(p) for p in folder.rglob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []
    if files:
        return pl.scan_parquet(files, hive_partitioning=False)
    if name in LAKE_SCHEMAS:
        return pl.from_arrow(LAKE_SCHEMAS[name].empty_table()).lazy()
    raise ConfigError(f"no table {name!r} in {lake_dir}")


def scan_feature(lake_dir: str | Path, name: str) -> pl.LazyFrame:
    """A built view's rows without the state bounds (what another view may read)."""
    path = Path(lake_dir) / f"{FEATURE_PREFIX}{name}" / "data.parquet"
    if not path.exists():
        raise ConfigError(f"feature view {name!r} is not built yet: run `chainlake features build {name}`")
    return pl.scan_parquet(path).drop(STATE_BOUNDS, strict=False)


def pool_blocks(pool_reserves: pl.LazyFrame, blocks: pl.LazyFrame) -> pl.LazyFrame:
    """Every (pool, block) from the pool's first reserves block to the lake's last block, with block_time.

    Built from blocks actually in the lake, so a gap in `blocks` is a gap in the grid, never an invented block.
    """
    first = pool_reserves.group_by("pool").agg(pl.col("block_number").min().alias("first_block"))
    grid = (blocks.select("block_number", pl.from_epoch("timestamp", time_unit="s")
                          .dt.replace_time_zone("UTC").dt.cast_time_unit("us").alias("block_time"))
            .join(first, how="cross").filter(pl.col("block_number") >= pl.col("first_block")))
    return grid.select("pool", "block_number", "block_time").sort("pool", "block_number")


def clip(name: str, frame: pl.LazyFrame, block: int) -> pl.LazyFrame:
    """What a table held when block `block` was the newest block: rows of later blocks dropped, and for the
    mempool, transactions first seen later dropped and every fact learned later undone (see `_clip_mempool`)."""
    if name in BLOCK_TABLES or name.startswith(FEATURE_PREFIX):
        return frame.filter(pl.col("block_number") <= block)
    if name in STATIC_TABLES:
        return frame
    if name == "mempool_observations" or name in PENDING_TABLES:
        return _clip_mempool(frame, block)
    raise ConfigError(f"no rule to cut table {name!r} back to block {block}")


def _clip_mempool(frame: pl.LazyFrame, block: int) -> pl.LazyFrame:
    """The mempool tables at `block`: transactions first seen later are dropped; `last_seen_head` is capped;
    later inclusions become pending; `replaced`/`dropped` statuses still seen at `block` become pending
    (with `replaced_by` cleared); `sightings` and `last_seen_ms` of a transaction still seen after the cut
    are unknown (null), since the watcher's later sightings had not happened yet."""
    names = frame.collect_schema().names()
    out = frame.filter(pl.col("first_seen_head") <= block)
    seen_later = pl.col("last_seen_head") > block
    edits: list[pl.Expr] = []
    if "included_block" in names:
        later = pl.col("included_block") > block
        gone = pl.col("status").is_in(["replaced", "dropped"]) & (pl.col("last_seen_head") >= block)
        pending = later | gone
        edits += [pl.when(later).then(None).otherwise(pl.col(c)).alias(c) for c in INCLUSION_COLUMNS if c in names]
        edits.append(pl.when(pending).then(pl.lit("pending")).otherwise(pl.col("status")).alias("status"))
        if "replaced_by" in names:
            edits.append(pl.when(pending).then(None).otherwise(pl.col("replaced_by")).alias("replaced_by"))
    for column in ("sightings", "last_seen_ms"):
        if column in names:
            edits.append(pl.when(seen_later).then(None).otherwise(pl.col(column)).alias(column))
    out = out.with_columns(edits) if edits else out
    return out.with_columns(pl.min_horizontal("last_seen_head", pl.lit(block)).alias("last_seen_head"))


def resolve_inputs(reads: Iterable[str], lake_dir: str | Path, computed: Mapping[str, pl.DataFrame] | None = None,
                   upto: int | None = None) -> dict[str, pl.LazyFrame]:
    """The LazyFrames a view reads: from `computed` views first (a build computes every view before
    writing any), else the lake; cut back to block `upto` when given."""
    computed = computed or {}
    out: dict[str, pl.LazyFrame] = {}
    for name in reads:
        if name == GRID:
            parts = {t: _one(t, lake_dir, computed, upto) for t in ("pool_reserves", "blocks")}
            out[name] = pool_blocks(parts["pool_reserves"], parts["blocks"])
        else:
            out[name] = _one(name, lake_dir, computed, upto)
    return out


def _one(name: str, lake_dir: str | Path, computed: Mapping[str, pl.DataFrame], upto: int | None) -> pl.LazyFrame:
    if name.startswith(FEATURE_PREFIX):
        view = name[len(FEATURE_PREFIX):]
        frame = (computed[view].lazy().drop(STATE_BOUNDS, strict=False) if view in computed
                 else scan_feature(lake_dir, view))
    else:
        frame = scan_lake_table(lake_dir, name)
    return frame if upto is None else clip(name, frame, upto)


def clip_all(tables: Mapping[str, pl.LazyFrame], block: int) -> dict[str, pl.LazyFrame]:
    """`clip` for in-memory inputs (the grid is rebuilt from the clipped reserves and blocks when present)."""
    out = {name: clip(name, frame, block) for name, frame in tables.items() if name != GRID}
    if GRID in tables:
        out[GRID] = tables[GRID].filter(pl.col("block_number") <= block)
    return out
