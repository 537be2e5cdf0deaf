"""Compute feature views, turn their rows into point-in-time state tables, and write them to the lake.

A view's output is one row per (entity, event block): the features as known once that block was mined.
The engine checks that contract (columns present, integer block column, no null or duplicate keys) and
stores the rows as a *state table* at ``LAKE/feature_<name>/data.parquet``:

| column          | meaning                                                                          |
|-----------------|----------------------------------------------------------------------------------|
| <entity>        | the entity key (e.g. ``pool``)                                                   |
| <event_time>    | the event block: the row was computed from blocks <= it                          |
| valid_from      | event block + 1: the first block whose transactions could act on the value       |
| valid_to        | the next row's valid_from for the entity (exclusive), null while it is the latest|
| features...     | the view's columns                                                               |

Rows are sorted by (valid_from, entity): the order a point-in-time join wants. A value is "known at block
b" when valid_from <= b < valid_to: strictly before b, since a trader choosing what goes into block b
has seen block b - 1 at most.

Causality (no look-ahead) is checkable: `causality_check` recomputes a view on inputs cut back to a block
(`chainlake.features.inputs.clip`) and compares the rows up to that block with the full computation.

Bounded history is checkable too: `history_check` recomputes a view on the window its `history_blocks`
declares (`chainlake.features.inputs.window`) and compares the row of the window's last block with the
full computation. `compute_latest` computes the newest rows of views from such windows only: the online
path (`chainlake.features.online`) runs the same view definitions this way, no second implementation.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from chainlake.errors import ConfigError
from chainlake.features.inputs import (
    FEATURE_PREFIX,
    GRID,
    clip_all,
    resolve_inputs,
    window_inputs,
)
from chainlake.features.registry import Registry, load_registry
from chainlake.features.view import FeatureView
from chainlake.ingest.lake import write_parquet_atomic

KEY_TYPES = (pl.Int64, pl.Int32, pl.UInt64, pl.UInt32)
# The polars engine for windows of a few hundred rows (the online engine). polars 2 collects lazy queries
# with its streaming engine by default, whose set-up per query dominates on small inputs: on the devnet's
# per-block windows the in-memory engine computes the polars views in about half the time.
SMALL = "in-memory"
# `execute(...).to_arrow_table()` copies the rows once more than a relation would: on the online engine's
# windows (a few rows) that copy costs far less than the relation's second planning of the statement.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


def compute_view(view: FeatureView, tables: Mapping[str, pl.LazyFrame],
                 con: duckdb.DuckDBPyConnection | None = None, block: int | None = None,
                 engine: str = "auto") -> pl.DataFrame:
    """Run one view on its input tables and return its checked rows, sorted by (entity, event block).

    `con`: a DuckDB connection to run SQL views on (the online engine keeps one: opening a connection
    costs more than a view on a small window); without it, each SQL view gets its own. `block`: keep (and
    check) only the rows of that block (the online engine's new row). `engine`: the polars engine that
    collects (`SMALL`, the in-memory one, for the online engine's windows of a few hundred rows).
    """
    missing = [name for name in view.reads if name not in tables]
    if missing:
        raise ConfigError(f"{view.where()}: no input table {', '.join(map(repr, missing))}")
    frame = _run_sql(view, tables, con, engine) if view.kind == "sql" else _run_polars(view, tables, engine)
    return check_rows(view, frame, block)


def _run_sql(view: FeatureView, tables: Mapping[str, pl.LazyFrame],
             con: duckdb.DuckDBPyConnection | None = None, engine: str = "auto") -> pl.DataFrame:
    own = con is None
    con = duckdb.connect() if own else con
    try:
        # one call: each collect costs its planning
        frames = pl.collect_all([tables[name] for name in view.reads], engine=engine)
        for name, frame in zip(view.reads, frames):  # one chunk: DuckDB's Arrow scan pays per record batch
            con.register(name, frame.rechunk().to_arrow())
        if own:  # a relation: its Arrow output is not copied (full builds return many rows)
            return pl.from_arrow(con.sql(view.sql).to_arrow_table())
        # the online engine's small windows: `execute` plans the statement once, a relation twice (bind, run)
        return pl.from_arrow(con.execute(view.sql).to_arrow_table())
    except duckdb.Error as exc:
        raise ConfigError(f"{view.where()}: {str(exc).splitlines()[0]}") from None
    finally:
        if own:
            con.close()
        else:
            for name in view.reads:  # a shared connection keeps no table of this call
                con.unregister(name)


def _run_polars(view: FeatureView, tables: Mapping[str, pl.LazyFrame], engine: str = "auto") -> pl.DataFrame:
    return _collect_polars([(view, _polars_plan(view, tables))], engine)[0]


def _polars_plan(view: FeatureView, tables: Mapping[str, pl.LazyFrame]) -> pl.LazyFrame | pl.DataFrame | object:
    """A polars view's result before it is collected (what its function returned)."""
    try:
        return view.fn(**{name: tables[name] for name in view.reads})
    except pl.exceptions.PolarsError as exc:
        raise ConfigError(f"{view.where()}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def _collect_polars(plans: Sequence[tuple[FeatureView, object]], engine: str = "auto") -> list[pl.DataFrame]:
    """The plans of polars views collected in one `collect_all` (one call: each collect costs its planning and
    dispatch); on an error, one by one, so that the message names the view that failed."""
    lazy = [i for i, (_, out) in enumerate(plans) if isinstance(out, pl.LazyFrame)]
    outs = [out for _, out in plans]
    try:
        for i, frame in zip(lazy, pl.collect_all([outs[i] for i in lazy], engine=engine) if len(lazy) > 1 else
                            [outs[i].collect(engine=engine) for i in lazy]):
            outs[i] = frame
    except pl.exceptions.PolarsError:
        for i in lazy:
            try:
                outs[i] = outs[i].collect(engine=engine) if isinstance(outs[i], pl.LazyFrame) else outs[i]
            except pl.exceptions.PolarsError as exc:
                raise ConfigError(f"{plans[i][0].where()}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        raise
    for (view, _), out in zip(plans, outs):
        if not isinstance(out, pl.DataFrame):
            raise ConfigError(f"{view.where()}: the function returned {type(out).__name__}, not a polars frame")
    return outs


def check_rows(view: FeatureView, frame: pl.DataFrame, block: int | None = None) -> pl.DataFrame:
    """The view contract: entity and event-time columns present, the event time an integer block, keys
    non-null and unique, at least one feature column. Returns the rows sorted by (entity, event block);
    with `block`, only that block's rows (keys checked on them only)."""
    for column, role in ((view.entity, "entity"), (view.event_time, "event_time")):
        if column not in frame.columns:
            raise ConfigError(f"{view.where()}: the result has no {role} column {column!r} "
                              f"(columns: {', '.join(frame.columns)})")
    if frame.schema[view.event_time] not in KEY_TYPES:
        raise ConfigError(f"{view.where()}: event_time {view.event_time!r} must be an integer block number, "
                          f"not {frame.schema[view.event_time]}")
    reserved = [c for c in ("valid_from", "valid_to") if c in frame.columns]
    if reserved:
        raise ConfigError(f"{view.where()}: columns {reserved} are reserved for the state table")
    if len(frame.columns) < 3:
        raise ConfigError(f"{view.where()}: the result has no feature column besides its keys")
    keys = list(view.keys)
    if block is not None:  # the online engine's new row(s): a few rows, checked without polars' query engine
        return _check_block_rows(view, frame, block)
    nulls, duplicated = frame.select(pl.any_horizontal(pl.col(keys).is_null()).any().alias("nulls"),
                                     pl.struct(keys).is_duplicated().sum().alias("duplicated")).row(0)
    if nulls:  # one pass for both checks: the online engine runs them on every block
        raise ConfigError(f"{view.where()}: null {view.entity!r} or {view.event_time!r} in the result")
    if duplicated:
        raise ConfigError(f"{view.where()}: {duplicated} rows share an ({view.entity}, {view.event_time}) key; "
                          "a view gives one row per entity per block")
    return (frame.lazy().with_columns(pl.col(view.event_time).cast(pl.Int64)).sort(keys)
            .select(*keys, pl.exclude(keys)).collect())


def _block_rows(frame: pl.DataFrame, event_time: str, block: int) -> pl.DataFrame:
    """The rows of `block` (gathered by index: on a few hundred rows, a lazy filter costs its planning)."""
    return frame[(frame.get_column(event_time) == block).arg_true()]


def _check_block_rows(view: FeatureView, frame: pl.DataFrame, block: int) -> pl.DataFrame:
    """`check_rows` on the rows of `block` only, the same checks and result, with Series operations only."""
    keys = list(view.keys)
    frame = _checked_keys(view, _block_rows(frame, view.event_time, block))
    frame = frame[[*keys, *[c for c in frame.columns if c not in keys]]]
    frame = frame.replace_column(1, frame.get_column(view.event_time).cast(pl.Int64))
    return frame[frame.get_column(view.entity).arg_sort()] if frame.height > 1 else frame  # one block: by entity


def _checked_keys(view: FeatureView, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (one block's rows) once its keys are known non-null and unique."""
    keys = list(view.keys)
    if any(frame.get_column(k).null_count() for k in keys):
        raise ConfigError(f"{view.where()}: null {view.entity!r} or {view.event_time!r} in the result")
    duplicated = int(frame[keys].is_duplicated().sum()) if frame.height > 1 else 0
    if duplicated:
        raise ConfigError(f"{view.where()}: {duplicated} rows share an ({view.entity}, {view.event_time}) key; "
                          "a view gives one row per entity per block")
    return frame


def to_state(view: FeatureView, rows: pl.DataFrame) -> pl.DataFrame:
    """Rows (sorted by entity, event block) as a state table: valid_from / valid_to added, sorted for as-of joins."""
    state = rows.with_columns((pl.col(view.event_time) + 1).alias("valid_from"))
    state = state.with_columns(pl.col("valid_from").shift(-1).over(view.entity).alias("valid_to"))
    keys = list(view.keys)
    state = state.select(*keys, "valid_from", "valid_to", pl.exclude(*keys, "valid_from", "valid_to"))
    return state.sort("valid_from", view.entity)


def state_path(lake_dir: str | Path, view: FeatureView | str) -> Path:
    name = view.name if isinstance(view, FeatureView) else view
    return Path(lake_dir) / f"{FEATURE_PREFIX}{name}" / "data.parquet"


def write_state(lake_dir: str | Path, view: FeatureView, rows: pl.DataFrame) -> Path:
    """Check `rows`, turn them into the view's state table and write it atomically."""
    path = state_path(lake_dir, view)
    write_parquet_atomic(path, to_state(view, check_rows(view, rows)).to_arrow())
    return path


@dataclass(frozen=True)
class BuildReport:
    view: FeatureView
    rows: int
    entities: int
    first_block: int | None
    last_block: int | None
    path: Path

    def summary(self) -> str:
        span = f"blocks {self.first_block}..{self.last_block}" if self.rows else "no rows"
        return f"{self.view.table}: {self.rows:,} rows, {self.entities} {self.view.entity}s, {span}"


def build_features(lake_dir: str | Path, names: Sequence[str] | None = None, registry: Registry | None = None,
                   upto: int | None = None, upstream: bool = True) -> list[BuildReport]:
    """Compute the named views (all by default) and the views they read, then write their state tables.

    Every view is computed before any is written, so a failing view (bad SQL, a broken contract) leaves
    the lake exactly as it was. `upto` builds as if block `upto` were the newest block in the lake.
    `upstream=False` builds only the named views and reads the views they depend on from the lake (a
    Dagster asset, whose upstream views are assets of their own).
    """
    registry = registry or load_registry()
    order = registry.resolve(names) if upstream else [registry.get(n) for n in names or registry.views]
    computed: dict[str, pl.DataFrame] = {}
    for view in order:
        tables = resolve_inputs(view.reads, lake_dir, computed, upto)
        computed[view.name] = compute_view(view, tables)
    reports = []
    for view in order:
        rows = computed[view.name]
        path = write_state(lake_dir, view, rows)
        blocks = rows.get_column(view.event_time)
        reports.append(BuildReport(view, rows.height, rows.get_column(view.entity).n_unique(),
                                   blocks.min() if rows.height else None, blocks.max() if rows.height else None,
                                   path))
    return reports


@dataclass(frozen=True)
class CausalityOutcome:
    passed: bool
    description: str
    cut: int | None


def frame_difference(got: pl.DataFrame, expected: pl.DataFrame) -> str | None:
    """None when the frames are equal (floats to 1e-9 relative), else the first difference in one line."""
    try:
        assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300]
    return None


def causality_check(view: FeatureView, tables: Mapping[str, pl.LazyFrame], cut: int,
                    full: pl.DataFrame | None = None) -> CausalityOutcome:
    """Does the view at blocks <= `cut` depend only on data of blocks <= `cut`?

    Recomputes the view on every input cut back to `cut` and compares it with the rows <= `cut` of the
    computation on everything (`full`, computed here if not given). Any difference means look-ahead.
    """
    full = compute_view(view, tables) if full is None else full
    expected = full.filter(pl.col(view.event_time) <= cut)
    got = compute_view(view, clip_all(tables, cut))
    detail = frame_difference(got, expected)
    if detail is not None:
        return CausalityOutcome(False, f"{view.name}: rows up to block {cut} change when later blocks are "
                                       f"added (look-ahead): {detail}", cut)
    return CausalityOutcome(True, f"{view.name}: {expected.height:,} rows up to block {cut} are the same "
                                  "computed with or without the later blocks", cut)


def lake_causality_check(lake_dir: str | Path, view: FeatureView, cut: int | None = None) -> CausalityOutcome:
    """`causality_check` on the lake's inputs, cut by default at the middle of the view's block span."""
    tables = resolve_inputs(view.reads, lake_dir)
    full = compute_view(view, tables)
    if cut is None:
        if full.height == 0:
            return CausalityOutcome(True, f"{view.name}: no rows yet", None)
        blocks = full.get_column(view.event_time)
        cut = int(blocks.min() + (blocks.max() - blocks.min()) // 2)
    return causality_check(view, tables, cut, full)


def compute_latest(registry: Registry, names: Sequence[str], tables: Mapping[str, pl.LazyFrame], block: int,
                   con: duckdb.DuckDBPyConnection | None = None, executor: Executor | None = None,
                   engine: str = SMALL) -> dict[str, pl.DataFrame]:
    """The rows at `block` of the named views, computed from windows of `tables` (lake tables, as known
    at `block` or later) only: each view, upstream ones first, on the blocks `Registry.spans` gives it.

    Equal to the full computation's rows at `block` when every view's `history_blocks` is right
    (`history_check`); `LatestRows` (the online engine) starts from this and then computes each new block
    on each view's own history only. The `pool_blocks` grid is built once, for the widest span that reads
    it: a narrower window's grid is the same rows cut to its blocks (a pool's grid starts at its first
    reserves row in the window, and a window whose blocks the pool's first row precedes holds a row of it
    before them: the state row carried, or an earlier one).

    `executor`: views that do not read each other run at once on its threads (polars and DuckDB release
    the GIL while they compute), each SQL view on its own cursor of `con`. Views are submitted
    upstream-first, so a view waits only for views already running or done.
    """
    rows = _span_rows(registry, registry.spans(names), tables, block, con, executor, engine)
    return {registry.get(n).name: _at(registry.get(n), rows[registry.get(n).name], block) for n in names}


def _span_rows(registry: Registry, spans: Mapping[str, int], tables: Mapping[str, pl.LazyFrame], block: int,
               con: duckdb.DuckDBPyConnection | None, executor: Executor | None,
               engine: str = SMALL) -> dict[str, pl.DataFrame]:
    """Every view of `spans` (dependency order) computed on its span of blocks ending at `block`: all its rows."""
    inputs = _with_grid(registry, spans, tables, block, engine)
    return _run_views(registry, list(spans), con, executor,
                      lambda name, upstream, cursor: _window_rows(registry, name, inputs, upstream,
                                                                  block - spans[name] + 1, block, cursor,
                                                                  engine=engine))


def _with_grid(registry: Registry, spans: Mapping[str, int], tables: Mapping[str, pl.LazyFrame],
               block: int, engine: str = SMALL) -> dict[str, pl.LazyFrame]:
    """`tables` with the `pool_blocks` grid built once, at the widest span of the views reading it."""
    inputs = dict(tables)
    gridded = [spans[name] for name in spans if GRID in registry.views[name].reads]
    if gridded and GRID not in inputs:  # built once, at the widest span: a narrower one is its cut
        grid = window_inputs([GRID], inputs, block - max(gridded) + 1, block)[GRID]
        inputs[GRID] = grid.collect(engine=engine).lazy()
    return inputs


def _at(view: FeatureView, rows: pl.DataFrame, block: int) -> pl.DataFrame:
    return _block_rows(rows, view.event_time, block)


def _window_rows(registry: Registry, name: str, inputs: Mapping[str, pl.LazyFrame],
                 upstream: Mapping[str, pl.DataFrame | pl.LazyFrame], first: int, last: int,
                 con: duckdb.DuckDBPyConnection | None, only_last: bool = False,
                 engine: str = SMALL) -> pl.DataFrame:
    """One view's rows on the window first..last (only those of `last` with `only_last`), the views it
    reads taken from `upstream`."""
    view = registry.views[name]
    tables = {**inputs, **{up.table: upstream[up.name].lazy() for up in registry.upstream(view)}}
    return compute_view(view, window_inputs(view.reads, tables, first, last), con, last if only_last else None,
                        engine)


def _run_views(registry: Registry, order: Sequence[str], con: duckdb.DuckDBPyConnection | None,
               executor: Executor | None, job) -> dict[str, pl.DataFrame]:
    """`job(name, {upstream view: its result}, con or a cursor of it)` for every view of `order` (dependency
    order). With `executor`, views that do not read each other run at once (shallowest first), each SQL view
    on its own cursor of `con`; a view waits only for views already running or done."""
    if executor is None:
        out: dict[str, pl.DataFrame] = {}
        for name in order:
            out[name] = job(name, {u.name: out[u.name] for u in registry.upstream(registry.views[name])}, con)
        return out
    depth: dict[str, int] = {}
    for name in order:  # dependency order: a view's upstream views are seen before it
        depth[name] = 1 + max((depth[u.name] for u in registry.upstream(registry.views[name])), default=-1)
    futures: dict[str, Future] = {}

    def run(name: str) -> pl.DataFrame:
        upstream = {u.name: futures[u.name].result() for u in registry.upstream(registry.views[name])}
        cursor = con.cursor() if con is not None and registry.views[name].kind == "sql" else None
        try:
            return job(name, upstream, cursor)
        finally:
            if cursor is not None:
                cursor.close()

    for name in sorted(order, key=depth.get):  # stable: dependency order within a depth
        futures[name] = executor.submit(run, name)
    return {name: future.result() for name, future in futures.items()}


def _new_rows(view: FeatureView, plan: pl.LazyFrame | pl.DataFrame, block: int) -> pl.LazyFrame:
    """A view's rows of `block` as `check_rows` returns them (keys first, event block as Int64, sorted), as a
    query: what a view reading it sees, before the same rows are checked once collected. The cast takes any
    event-time type: that it is an integer was checked on the view's first rows (`LatestRows._start`), and a
    view's output types follow from its inputs', which are the lake's."""
    keys = list(view.keys)
    return (plan.lazy().filter(pl.col(view.event_time) == block)
            .with_columns(pl.col(view.event_time).cast(pl.Int64)).select(*keys, pl.exclude(keys)).sort(keys))


def append_rows(frame: pl.DataFrame, new: pl.DataFrame) -> pl.DataFrame:
    """`frame` with the rows of `new` after it: `pl.concat(how="vertical_relaxed")`, without its lazy query when
    the schemas already agree (the usual case: rows of the same view or table, block after block)."""
    if frame.schema == new.schema:
        return pl.concat([frame, new], how="vertical", rechunk=False)
    return pl.concat([frame, new], how="vertical_relaxed", rechunk=False)


class LatestRows:
    """The newest rows of views block after block, each view's rows computed once (the online engine).

    A view's row at block b depends only on its inputs in blocks b - history + 1..b (its `history_blocks`,
    checked by `history_check`), so rows computed for earlier blocks never change while the chain does
    not reorganize. `at(tables, b)` for the block after the last one computes each view on its own history
    window ending at b only (the views it reads: their cached rows of that window plus their new row) and
    keeps the row of b; the first call (or one after a long gap) computes every view on its whole span
    (`compute_latest`'s way) and caches the rows the readers of each view will look back over. The same
    definitions on less data: the rows are those of the full computation whenever `compute_latest`'s are.

    `drop_from(fork)` forgets the rows of blocks >= fork (a reorg); the next `at` recomputes from there.
    """

    GAP = 16  # blocks after the last one computed that are stepped one by one; a longer gap starts again
    SLACK = 64  # blocks the cache grows past what readers need before it is cut back (`maintain`)
    OVERDUE = 4 * SLACK  # ... and before `at` cuts it itself, when `maintain` was not called

    def __init__(self, registry: Registry, names: Sequence[str], con: duckdb.DuckDBPyConnection | None = None,
                 executor: Executor | None = None, engine: str = SMALL):
        self.registry, self.con, self.executor, self.engine = registry, con, executor, engine
        self.names = [registry.get(n).name for n in names]
        self.spans = registry.spans(self.names)
        self.history = {name: registry.declared_history(registry.views[name]) for name in self.spans}
        # rows of each view its readers look back over (1: only the newest, for the named views)
        self.keep = {name: self.spans[name] - self.history[name] + 1 for name in self.spans}
        self.gridded = max((self.history[n] for n in self.spans if GRID in registry.views[n].reads), default=0)
        self.rows: dict[str, pl.DataFrame] = {}
        self.head: int | None = None  # the last block computed
        self._floor = 0  # the cache holds what a step to any block >= this needs
        self._cut_at = 0

    def at(self, tables: Mapping[str, pl.LazyFrame], block: int) -> dict[str, pl.DataFrame]:
        """{view: its rows at `block`} for the named views; `tables` hold the inputs as known at `block`."""
        if self.head is None or block < self.head or block - self.head > self.GAP:
            self._start(tables, block)
        for number in range(self.head + 1, block + 1):
            self._step(tables, number)
        if self.head - self._cut_at >= self.OVERDUE:
            self._cut()
        return {name: _at(self.registry.views[name], self.rows[name], block) for name in self.names}

    def drop_from(self, fork: int) -> None:
        """Forget the rows of blocks >= `fork` (a reorg replaced them)."""
        if self.head is None or fork > self.head:
            return
        if fork < self._floor:  # rows the steps from `fork` on would read were cut: start again
            self.head = None
            return
        self.rows = {name: rows.filter(pl.col(self.registry.views[name].event_time) < fork)
                     for name, rows in self.rows.items()}
        self.head = fork - 1

    def _start(self, tables: Mapping[str, pl.LazyFrame], block: int) -> None:
        rows = _span_rows(self.registry, self.spans, tables, block, self.con, self.executor, self.engine)
        self.rows = {name: rows[name].filter(pl.col(self.registry.views[name].event_time) > block - self.keep[name])
                     for name in self.spans}
        self.head = self._floor = self._cut_at = block

    def _step(self, tables: Mapping[str, pl.LazyFrame], block: int) -> None:
        """Each view's row(s) at `block`, from its own history window; appended to the cache.

        Per-call overhead dominates on these windows, so every polars view is one lazy query and all are
        collected in a single `collect_all` (`_fused_rows`). A view reading another reads its cached rows
        followed by the other's query for the new block, cut to that block's rows in the contract's order
        (`_new_rows`), so the reader sees the rows `check_rows` would give it (views are deterministic: the
        offline and online values could not agree otherwise). SQL views run as statements, on the executor
        (each on its own cursor) while the polars views are planned and collected.

        `_step_by_depth` is the reference way, one depth at a time, each polars view collected and checked on
        its own: it computes the block when the fused query cannot (a view reading a SQL view that reads a
        polars view), and names the view and the broken contract when the fused query fails.
        """
        inputs = _with_grid(self.registry, {n: self.history[n] for n in self.spans}, tables, block, self.engine)
        new = self._fused_rows(inputs, block)
        if new is None:
            self._step_by_depth(inputs, block)
            return
        self.rows = {name: append_rows(self.rows[name], new[name]) for name in self.spans}
        self.head = block

    def _fused_rows(self, inputs: Mapping[str, pl.LazyFrame], block: int) -> dict[str, pl.DataFrame] | None:
        """Every view's new rows with all polars views in one `collect_all`; None when that cannot be done or
        fails (the caller then computes the block depth by depth, which raises the error a view deserves)."""
        views = {name: self.registry.views[name] for name in self.spans}  # dependency order
        late = [n for n, v in views.items() if v.kind == "sql"  # SQL views reading a polars view: collect first
                and any(u.kind != "sql" for u in self.registry.upstream(v))]
        if any(u.name in late for v in views.values() for u in self.registry.upstream(v)):
            return None  # a view reading such a view would need a second collect
        done: dict[str, pl.DataFrame | Future] = {}  # new rows of SQL views (or their future)
        plans: dict[str, pl.LazyFrame] = {}  # new-row queries of polars views, not collected yet

        def new_rows(name: str) -> pl.LazyFrame:
            if name in plans:
                return plans[name]
            rows = done[name]
            return (rows.result() if isinstance(rows, Future) else rows).lazy()

        def window_of(name: str) -> dict[str, pl.LazyFrame]:
            cached = {u.table: pl.concat([self.rows[u.name].lazy(), new_rows(u.name)], how="vertical_relaxed")
                      for u in self.registry.upstream(views[name])}
            return window_inputs(views[name].reads, {**inputs, **cached}, block - self.history[name] + 1, block)

        def run_sql(name: str) -> pl.DataFrame:
            return self._sql_rows(views[name], window_of(name), block)

        try:
            for name, view in views.items():
                if view.kind != "sql":
                    plan = _polars_plan(view, window_of(name))
                    if not isinstance(plan, (pl.LazyFrame, pl.DataFrame)):
                        return None
                    plans[name] = _new_rows(view, plan, block)
                elif name not in late:
                    done[name] = self.executor.submit(run_sql, name) if self.executor is not None else run_sql(name)
            collected = pl.collect_all(list(plans.values()), engine=self.engine) if plans else []
        except pl.exceptions.PolarsError:
            return None
        finally:
            for rows in done.values():  # no statement left running (its error, if any, is raised below)
                if isinstance(rows, Future):
                    rows.exception()
        for name, rows in zip(plans, collected):  # already cut and ordered by `_new_rows`: keys left to check
            done[name] = _checked_keys(views[name], rows)
        plans.clear()
        for name in late:
            done[name] = run_sql(name)
        return {name: rows.result() if isinstance(rows, Future) else rows for name, rows in done.items()}

    def _step_by_depth(self, inputs: Mapping[str, pl.LazyFrame], block: int) -> None:
        """`_step` one depth at a time, each polars view collected and checked on its own rows (see `_step`).
        A view waits only for the views it reads."""
        futures: dict[str, Future] = {}

        def window_of(name: str) -> dict[str, pl.LazyFrame]:
            view = self.registry.views[name]
            cached = {u.table: appended(u.name).lazy() for u in self.registry.upstream(view)}
            return window_inputs(view.reads, {**inputs, **cached}, block - self.history[name] + 1, block)

        def appended(name: str) -> pl.DataFrame:  # a view's cached rows and its new row, built once per block
            if name not in extended:
                extended[name] = append_rows(self.rows[name], futures[name].result())
            return extended[name]

        extended: dict[str, pl.DataFrame] = {}

        def run_sql(name: str) -> pl.DataFrame:
            return self._sql_rows(self.registry.views[name], window_of(name), block)

        depth: dict[str, int] = {}
        for name in self.spans:  # dependency order: a view's upstream views are seen before it
            depth[name] = 1 + max((depth[u.name] for u in self.registry.upstream(self.registry.views[name])),
                                  default=-1)
        order = sorted(self.spans, key=depth.get)  # stable: dependency order within a depth
        for level in sorted(set(depth.values())):
            for name in order:  # the SQL views of this depth: on the executor, else here, in order
                if depth[name] == level and self.registry.views[name].kind == "sql":
                    if self.executor is not None:  # the views it reads all have a future by now
                        futures[name] = self.executor.submit(run_sql, name)
                    else:
                        futures[name] = Future()
                        futures[name].set_result(run_sql(name))
            names = [n for n in order if depth[n] == level and self.registry.views[n].kind != "sql"]
            if not names:
                continue
            plans = [(self.registry.views[n], _polars_plan(self.registry.views[n], window_of(n))) for n in names]
            for name, (view, _), out in zip(names, plans, _collect_polars(plans, self.engine)):
                futures[name] = Future()
                futures[name].set_result(check_rows(view, out, block))
        new = {name: futures[name].result() for name in self.spans}
        self.rows = {name: extended.get(name) if name in extended else append_rows(self.rows[name], new[name])
                     for name in self.spans}
        self.head = block

    def _sql_rows(self, view: FeatureView, window: Mapping[str, pl.LazyFrame], block: int) -> pl.DataFrame:
        """A SQL view's new rows, on a cursor of its own when views run on the executor at once."""
        cursor = self.con.cursor() if self.con is not None and self.executor is not None else self.con
        try:
            return compute_view(view, window, cursor, block, self.engine)
        finally:
            if cursor is not None and cursor is not self.con:
                cursor.close()

    def maintain(self) -> None:
        """Cut the cache back if it is due: work for the time between blocks (`OnlineFeatures.refresh`), which
        `at` does itself only when it is long overdue."""
        if self.head is not None and self.head - self._cut_at >= self.SLACK:
            self._cut()

    def _cut(self) -> None:
        """Drop the rows no reader will look back over again, keeping SLACK more blocks (for a reorg)."""
        self.rows = {name: rows.filter(pl.col(self.registry.views[name].event_time)
                                       > self.head - self.keep[name] - self.SLACK).rechunk()
                     for name, rows in self.rows.items()}
        self._floor = max(self._floor, self.head - self.SLACK)
        self._cut_at = self.head


def history_check(view: FeatureView, tables: Mapping[str, pl.LazyFrame], block: int,
                  full: pl.DataFrame | None = None) -> CausalityOutcome:
    """Does the view's row at `block` depend only on the window its `history_blocks` declares?

    Recomputes the view on the window of its inputs (`inputs.window`, views it reads given in `tables`)
    and compares its rows at `block` with those of the computation on everything (`full`). A difference
    means the view looks back further than it declares: the online engine would serve wrong values.
    """
    if view.history_blocks is None:
        raise ConfigError(f"{view.where()}: declares no history_blocks to check")
    full = compute_view(view, tables) if full is None else full
    expected = full.filter(pl.col(view.event_time) == block)
    got = compute_view(view, window_inputs(view.reads, tables, block - view.history_blocks + 1, block))
    got = got.filter(pl.col(view.event_time) == block)
    detail = frame_difference(got, expected)
    if detail is not None:
        return CausalityOutcome(False, f"{view.name}: the row at block {block} differs when computed from its "
                                       f"declared {view.history_blocks} blocks of history: {detail}", block)
    return CausalityOutcome(True, f"{view.name}: {expected.height} rows at block {block} are the same from "
                                  f"{view.history_blocks} blocks of history", block)
