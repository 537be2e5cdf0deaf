"""One asset per feature view (found in sql/ and features/), plus the training frame that joins them.

Thin: `chainlake.features` computes and writes; the assets add lineage (each view depends on the lake
tables and views it reads) and two checks: the view is causal (recomputed on inputs cut back to its
middle block, the rows up to there do not change) and up to date (its last row is the lake's last block).
"""

import dagster as dg
import polars as pl

from chainlake.features import FeatureView, Registry, build_features, lake_causality_check, load_registry
from chainlake.features.frames import build_training_frame
from chainlake.features.inputs import FEATURE_PREFIX, GRID, scan_lake_table
from dagster_project.resources import LakeStore

# Lake tables written as a side effect of another asset: tokens/pools metadata is cached by the decoders.
PRODUCED_BY = {"tokens": ["pool_reserves"], "pools": ["pool_reserves"], GRID: ["pool_reserves", "blocks"]}


def lineage(view: FeatureView) -> list[dg.AssetKey]:
    keys: list[str] = []
    for name in view.reads:
        for key in PRODUCED_BY.get(name, [name]):
            if key not in keys:
                keys.append(key)
    return [dg.AssetKey(k) for k in keys]


def owners(view: FeatureView) -> list[str]:
    """Dagster owners are e-mail addresses or `team:<name>`."""
    return [view.owner if "@" in view.owner or view.owner.startswith("team:") else f"team:{view.owner}"]


def up_to_date(lake: LakeStore, view: FeatureView, rows: pl.DataFrame) -> dg.AssetCheckResult:
    head = scan_lake_table(lake.lake, "blocks").select(pl.col("block_number").max()).collect().item()
    last = rows.get_column(view.event_time).max() if rows.height else None
    return dg.AssetCheckResult(check_name="up_to_date", passed=last is not None and last == head,
                               description=f"last row at block {last}, lake head {head}",
                               metadata={"last_block": last, "lake_head": head})


def feature_asset(view: FeatureView, registry: Registry) -> dg.AssetsDefinition:
    @dg.asset(
        name=view.table, group_name="features", kinds={"duckdb" if view.kind == "sql" else "polars", "parquet"},
        deps=lineage(view), description=view.description, owners=owners(view),
        metadata={"source": dg.MetadataValue.path(str(view.source)), "entity": view.entity,
                  "event_time": view.event_time, "ttl_blocks": view.ttl_blocks if view.ttl_blocks else "none"},
        check_specs=[
            dg.AssetCheckSpec("causal", asset=view.table,
                              description="recomputed on data cut at its middle block, no earlier row changes"),
            dg.AssetCheckSpec("up_to_date", asset=view.table, description="its last row is the lake's last block"),
        ],
    )
    def _asset(context: dg.AssetExecutionContext, lake: LakeStore) -> dg.MaterializeResult:
        [report] = build_features(lake.lake, [view.name], registry, upstream=False)
        context.log.info(report.summary())
        rows = pl.read_parquet(report.path)
        causal = lake_causality_check(lake.lake, view)
        return dg.MaterializeResult(
            metadata={"rows": report.rows, "entities": report.entities, "first_block": report.first_block,
                      "last_block": report.last_block, "path": dg.MetadataValue.path(str(report.path)),
                      "preview": dg.MetadataValue.md(_preview(rows))},
            check_results=[
                dg.AssetCheckResult(check_name="causal", passed=causal.passed, description=causal.description,
                                    metadata={"cut_block": causal.cut if causal.cut is not None else -1}),
                up_to_date(lake, view, rows),
            ],
        )

    return _asset


def _preview(rows: pl.DataFrame, n: int = 5) -> str:
    """The last rows as a Markdown table (the Dagster UI renders it)."""
    tail = rows.tail(n)
    head = "| " + " | ".join(tail.columns) + " |\n|" + "---|" * len(tail.columns) + "\n"
    return head + "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in tail.iter_rows())


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def feature_assets(registry: Registry) -> list[dg.AssetsDefinition]:
    return [feature_asset(view, registry) for view in registry.views.values()]


class TrainingFrameConfig(dg.Config):
    """Which views to join (empty: all), one row per pool every `stride` blocks."""

    features: list[str] = []
    stride: int = 1


def training_frame_asset(registry: Registry) -> dg.AssetsDefinition:
    @dg.asset(name="training_frame", group_name="frames", kinds={"polars", "parquet"},
              deps=[dg.AssetKey(v.table) for v in registry.views.values()],
              description="Every pool every `stride` blocks with each feature view as known at that block "
                          "(point-in-time as-of joins, TTL applied): LAKE/training_frame/data.parquet.")
    def training_frame(context: dg.AssetExecutionContext, config: TrainingFrameConfig,
                       lake: LakeStore) -> dg.MaterializeResult:
        frame, path = build_training_frame(lake.lake, config.features or None, stride=config.stride,
                                           registry=registry)
        nulls = {c: frame.get_column(c).null_count() for c in frame.columns if c not in ("pool", "block_number")}
        context.log.info(f"training frame: {frame.height:,} rows x {len(frame.columns)} columns -> {path}")
        return dg.MaterializeResult(metadata={
            "rows": frame.height, "columns": len(frame.columns), "path": dg.MetadataValue.path(str(path)),
            "null_share": dg.MetadataValue.json({c: round(n / max(frame.height, 1), 4) for c, n in nulls.items()}),
        })

    return training_frame


def load_feature_assets() -> tuple[list[dg.AssetsDefinition], list[dg.AssetKey]]:
    """The feature assets, the training frame asset, and the keys the catalog asset should wait for."""
    registry = load_registry()
    assets = [*feature_assets(registry), training_frame_asset(registry)]
    return assets, [dg.AssetKey(f"{FEATURE_PREFIX}{name}") for name in registry.views]
