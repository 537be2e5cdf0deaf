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

`window` cuts every input down to what a view with `history_blocks` N needs for its rows of blocks
`first..last` (`first` = the first row's block - N + 1): the online engine keeps only such a window in
memory, and `chainlake.features.engine.history_check` proves on data that a view's rows are the same on it.
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
# State tables (a row holds until the entity's next row): a window keeps the latest block's rows per entity
# before the window as well.
STATE_ENTITIES = {"pool_reserves": ("pool",), "balances": ("address", "token")}
# The token ledger: the balances its rows before a window add up to are kept as one row per holder.
LEDGER = "erc20_transfers"
MINT_ADDRESS = "0x" + "0" * 40


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


def window(name: str, frame: pl.LazyFrame, first: int, last: int) -> pl.LazyFrame:
    """What a view needs of table `name` for its rows up to block `last` whose history starts at `first`:
    the table as known at `last` (`clip`), without what cannot matter from `first` on.

    - block tables and views: the rows of blocks first..last;
    - state tables (`STATE_ENTITIES`): those, plus each entity's rows of its latest block before `first`
      (the state in force when the window starts);
    - the ledger (`erc20_transfers`): those, plus one transfer per holder at block first - 1 carrying the
      holder's balance from every earlier transfer (`carry_ledger`), so running balances are exact;
    - mempool tables: the transactions known at `last`, less those mined before `first` (`_window_mempool`);
    - static tables (`tokens`, `pools`): whole.
    """
    if first > last:
        raise ConfigError(f"a window of table {name!r} needs first <= last, got {first}..{last}")
    if name in STATIC_TABLES:
        return frame
    clipped = clip(name, frame, last)
    if name == "mempool_observations" or name in PENDING_TABLES:
        return _window_mempool(clipped, first)
    inside = clipped.filter(pl.col("block_number") >= first)
    if name in STATE_ENTITIES:
        before = clipped.filter(pl.col("block_number") < first)
        latest = pl.col("block_number") == pl.col("block_number").max().over(STATE_ENTITIES[name])
        return pl.concat([before.filter(latest), inside])
    if name == LEDGER:
        return pl.concat([carry_ledger(clipped.filter(pl.col("block_number") < first), first - 1), inside])
    return inside


def _window_mempool(frame: pl.LazyFrame, first: int) -> pl.LazyFrame:
    """Transactions mined before `first` are dropped. The rest stay, also those last seen before `first`:
    views join `mempool_swaps` with the `mempool` table's sightings, and a transaction's row must be in both
    or in neither, which only the inclusion (a fact of both tables) guarantees."""
    if "included_block" not in frame.collect_schema().names():
        return frame
    return frame.filter(pl.col("included_block").is_null() | (pl.col("included_block") >= first))


def carry_ledger(transfers: pl.LazyFrame, block: int) -> pl.LazyFrame:
    """The net of `transfers` per (token, holder) as one transfer at `block`: a mint (from the zero address)
    of a positive balance, a burn (to it) of a negative one; holders at zero left out.

    Raw amounts are summed as exact int128 (amounts beyond it are left out, as the ledger's readers do);
    `amount_raw_f64` and `amount` follow from the sum (decimal-adjusted when the ledger knows the decimals).
    """
    schema = transfers.collect_schema()
    amount = pl.col("amount_raw").cast(pl.Int128, strict=False)
    zero = pl.lit(0, pl.Int128)  # int128 has no unary minus in polars
    legs = pl.concat([
        transfers.select("token", pl.col("to_address").alias("holder"), amount.alias("delta"),
                         "amount_raw_f64", "amount"),
        transfers.select("token", pl.col("from_address").alias("holder"), (zero - amount).alias("delta"),
                         "amount_raw_f64", "amount"),
    ]).filter(pl.col("holder") != MINT_ADDRESS)
    scale = (pl.col("amount") / pl.col("amount_raw_f64")).drop_nans().first()  # 10^-decimals, if known
    net = (legs.group_by("token", "holder").agg(pl.col("delta").sum(), scale.alias("scale"))
           .filter(pl.col("delta") != 0).sort("token", "holder"))
    minted = pl.col("delta") > 0
    size = pl.when(minted).then(pl.col("delta")).otherwise(zero - pl.col("delta"))
    carried = net.select(
        pl.lit(block, pl.Int64).alias("block_number"),
        (-1 - pl.int_range(pl.len())).cast(schema["log_index"]).alias("log_index"),  # before any real log
        "token",
        pl.when(minted).then(pl.lit(MINT_ADDRESS)).otherwise(pl.col("holder")).alias("from_address"),
        pl.when(minted).then(pl.col("holder")).otherwise(pl.lit(MINT_ADDRESS)).alias("to_address"),
        size.cast(pl.String).alias("amount_raw"),
        size.cast(pl.Float64).alias("amount_raw_f64"),
        (size.cast(pl.Float64) * pl.col("scale")).alias("amount"),
    )
    return carried.select(pl.col(c).cast(schema[c]) if c in carried.collect_schema().names()
                          else pl.lit(None, schema[c]).alias(c) for c in schema.names())


def window_all(tables: Mapping[str, pl.LazyFrame], first: int, last: int) -> dict[str, pl.LazyFrame]:
    """`window` for in-memory inputs (the grid: its rows of blocks first..last)."""
    return window_inputs(tables, tables, first, last)


def window_inputs(reads: Iterable[str], tables: Mapping[str, pl.LazyFrame], first: int,
                  last: int) -> dict[str, pl.LazyFrame]:
    """The windows of the tables a view reads; the grid is taken from `tables` when there, else built from
    the windows of `pool_reserves` and `blocks` (the same rows: the grid of blocks first..last)."""
    out: dict[str, pl.LazyFrame] = {}
    for name in reads:
        if name == GRID and GRID in tables:
            out[name] = tables[GRID].filter(pl.col("block_number").is_between(first, last))
        elif name == GRID:
            out[name] = pool_blocks(window("pool_reserves", tables["pool_reserves"], first, last),
                                    window("blocks", tables["blocks"], first, last))
        else:
            out[name] = window(name, tables[name], first, last)
    return out


def clip_all(tables: Mapping[str, pl.LazyFrame], block: int) -> dict[str, pl.LazyFrame]:
    """`clip` for in-memory inputs (the grid is rebuilt from the clipped reserves and blocks when present)."""
    out = {name: clip(name, frame, block) for name, frame in tables.items() if name != GRID}
    if GRID in tables:
        out[GRID] = tables[GRID].filter(pl.col("block_number") <= block)
    return out
