"""The DuckDB catalog asset: one view per lake dataset (feature state tables included) in warehouse/chainlake.duckdb."""


import dagster as dg

from chainlake.catalog import build_catalog
from dagster_project.assets.decoded import DECODED_TABLES
from dagster_project.assets.raw import RAW_DATASETS
from dagster_project.resources import LakeStore


def lake_catalog_asset(feature_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    """The catalog waits for every table it gives a view: raw, decoded, mempool, the features, the frame."""
    deps = [*RAW_DATASETS, *DECODED_TABLES, "mempool", "mempool_swaps", *feature_keys, "training_frame",
            "backtest_report"]

    @dg.asset(group_name="catalog", kinds={"duckdb"}, deps=deps,
              description="warehouse/chainlake.duckdb: a view per dataset over the Parquet lake, "
                          "feature_<name> per feature view, backtest_results.")
    def lake_catalog(lake: LakeStore) -> dg.MaterializeResult:
        views = build_catalog(lake.lake, lake.catalog)
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(lake.catalog)),
            "views": dg.MetadataValue.json({v.name: v.files for v in views}),
        })

    return lake_catalog
