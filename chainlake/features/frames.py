"""Training frames: Feast's `get_historical_features`, over the lake's feature state tables.

`training_frame(entities, ["mid_price", "realized_vol_64:vol_64"])` takes an *entity frame*: one row per
(entity, as-of block) you want a training example for, e.g. (pool, block_number). For each row and each
requested view it attaches the view's latest value *known at* the as-of block b: the state row with
valid_from <= b (its event block is strictly before b, so a transaction landing in block b could have
been built from it), or null when there is none, or when the value is older than the view's TTL
(b - event block > ttl_blocks). One polars as-of join per view, no Python loop over rows.

Feature references are ``"view"`` (all its features) or ``"view:column"``. Output columns are the
feature names, or ``"view__column"`` with `full_feature_names=True` (Feast's spelling); a name clash
between views is an error that says to use full names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from chainlake.config import DEFAULT_LAKE
from chainlake.errors import ConfigError
from chainlake.features.engine import KEY_TYPES, state_path
from chainlake.features.registry import Registry, load_registry
from chainlake.features.view import FeatureView

BOUNDS = ("valid_from", "valid_to")


def parse_refs(features: Sequence[str], registry: Registry) -> dict[str, list[str] | None]:
    """{view name: [columns] or None for all}, in request order."""
    if isinstance(features, str):
        features = [features]
    if not features:
        raise ConfigError("training_frame: no features requested")
    wanted: dict[str, list[str] | None] = {}
    for ref in features:
        name, _, column = ref.partition(":")
        view = registry.get(name)
        if not column:
            wanted[view.name] = None
        elif wanted.get(view.name, []) is not None:
            wanted.setdefault(view.name, []).append(column)
    return wanted


def load_state(lake_dir: str | Path, view: FeatureView, columns: list[str] | None) -> tuple[pl.DataFrame, list[str]]:
    """The view's state table (keys, valid_from and the wanted columns), sorted by valid_from."""
    path = state_path(lake_dir, view)
    if not path.exists():
        raise ConfigError(f"{view.where()} is not built in {lake_dir}: run `chainlake features build {view.name}`")
    available = [c for c in pl.read_parquet_schema(path) if c not in (*view.keys, *BOUNDS)]
    if columns is None:
        columns = available
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise ConfigError(f"{view.where()} has no feature {', '.join(map(repr, unknown))} "
                          f"(it has: {', '.join(available)})")
    state = pl.read_parquet(path, columns=[view.entity, view.event_time, "valid_from", *columns])
    if not state.get_column("valid_from").is_sorted():  # written sorted; a hand-edited file may not be
        state = state.sort("valid_from")
    return state.with_columns(pl.col("valid_from").set_sorted()), columns


def built_through(lake_dir: str | Path, view: FeatureView) -> int | None:
    """The last event block of a view's state table (None: built but empty); raises if not built."""
    path = state_path(lake_dir, view)
    if not path.exists():
        raise ConfigError(f"{view.where()} is not built in {lake_dir}: run `chainlake features build {view.name}`")
    return pl.scan_parquet(path).select(pl.col(view.event_time).max()).collect().item()


def check_entities(entities: pl.DataFrame, view: FeatureView) -> None:
    if view.entity not in entities.columns:
        raise ConfigError(f"{view.where()} is keyed by {view.entity!r}, but the entity frame has no such column "
                          f"(columns: {', '.join(entities.columns)})")


def training_frame(entities: pl.DataFrame, features: Sequence[str], *, lake_dir: str | Path = DEFAULT_LAKE,
                   registry: Registry | None = None, as_of: str = "block_number",
                   full_feature_names: bool = False) -> pl.DataFrame:
    """The entity frame with each requested feature as known at each row's as-of block.

    Rows come back sorted by the as-of block (ties keep their input order); the entity frame's own
    columns are kept. Raises ConfigError (naming the view's file where there is one) for an unknown view
    or feature, a view not built yet, or a missing entity / as-of column.
    """
    registry = registry or load_registry()
    wanted = parse_refs(features, registry)
    if isinstance(entities, pl.LazyFrame):
        entities = entities.collect()
    if as_of not in entities.columns:
        raise ConfigError(f"training_frame: the entity frame has no as-of column {as_of!r} "
                          f"(columns: {', '.join(entities.columns)})")
    if entities.schema[as_of] not in KEY_TYPES:
        raise ConfigError(f"training_frame: as-of column {as_of!r} must be an integer block number, "
                          f"not {entities.schema[as_of]}")
    views = [registry.get(name) for name in wanted]
    for view in views:
        check_entities(entities, view)
    left = entities.with_columns(pl.col(as_of).cast(pl.Int64))
    if not left.get_column(as_of).is_sorted():
        left = left.sort(as_of, maintain_order=True)
    left = left.with_columns(pl.col(as_of).set_sorted())
    out_columns: dict[str, pl.Series] = {}
    for view in views:
        for name, series in view_columns(left, view, wanted[view.name], lake_dir, as_of, full_feature_names):
            if name in out_columns or name in left.columns:
                raise ConfigError(f"training_frame: column {name!r} comes from two places; "
                                  "pass full_feature_names=True for view__feature names")
            out_columns[name] = series
    return left.with_columns(**out_columns) if out_columns else left


def view_columns(left: pl.DataFrame, view: FeatureView, columns: list[str] | None, lake_dir: str | Path,
                 as_of: str, full_names: bool) -> list[tuple[str, pl.Series]]:
    """One view's features aligned to `left` (sorted by as-of): an as-of join on the keys only, then the TTL.

    Joining just (entity, as-of) and gathering the feature columns afterwards keeps the cost of each
    view independent of how many columns earlier views already added.
    """
    state, columns = load_state(lake_dir, view, columns)
    keys = left.select(view.entity, as_of)
    if keys.schema[view.entity] != state.schema[view.entity]:
        raise ConfigError(f"{view.where()}: entity {view.entity!r} is {state.schema[view.entity]} in the view "
                          f"but {keys.schema[view.entity]} in the entity frame")
    event = f"__{view.name}_event"
    right = state.rename({view.event_time: event})
    joined = keys.join_asof(right, left_on=as_of, right_on="valid_from", by=view.entity, strategy="backward",
                            check_sortedness=False)
    if view.ttl_blocks is not None:
        expired = (pl.col(as_of) - pl.col(event)) > view.ttl_blocks
        joined = joined.with_columns(pl.when(expired).then(None).otherwise(pl.col(c)).alias(c) for c in columns)
    return [(f"{view.name}__{c}" if full_names else c, joined.get_column(c)) for c in columns]


def pool_block_entities(lake_dir: str | Path, stride: int = 1, pools: Sequence[str] | None = None,
                        first_block: int | None = None, last_block: int | None = None) -> pl.DataFrame:
    """An entity frame over the lake's `pool_blocks` grid: (pool, block_number) every `stride` blocks."""
    from chainlake.features.inputs import resolve_inputs

    if stride < 1:
        raise ConfigError(f"stride must be at least 1 block, not {stride}")
    grid = resolve_inputs(["pool_blocks"], lake_dir)["pool_blocks"].select("pool", "block_number")
    if pools:
        grid = grid.filter(pl.col("pool").is_in([p.lower() for p in pools]))
    if first_block is not None:
        grid = grid.filter(pl.col("block_number") >= first_block)
    if last_block is not None:
        grid = grid.filter(pl.col("block_number") <= last_block)
    return grid.filter(pl.col("block_number") % stride == 0).sort("block_number", "pool").collect()


def build_training_frame(lake_dir: str | Path, features: Sequence[str] | None = None, *, stride: int = 1,
                         pools: Sequence[str] | None = None, registry: Registry | None = None,
                         out: str | Path | None = None) -> tuple[pl.DataFrame, Path]:
    """The lake's default training frame: every pool every `stride` blocks, with the requested views (all
    by default), written atomically to `out` (default ``LAKE/training_frame/data.parquet``)."""
    from chainlake.ingest.lake import write_parquet_atomic

    registry = registry or load_registry()
    entities = pool_block_entities(lake_dir, stride, pools)
    if entities.height == 0:
        raise ConfigError(f"no pool blocks in {lake_dir}: ingest and decode pool_reserves first")
    frame = training_frame(entities, list(features or registry.views), lake_dir=lake_dir, registry=registry,
                           full_feature_names=True)
    path = Path(out) if out is not None else Path(lake_dir) / "training_frame" / "data.parquet"
    write_parquet_atomic(path, frame.to_arrow())
    return frame, path
