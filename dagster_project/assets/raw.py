"""One partitioned asset per raw dataset; a partition is one fixed-size block range of the lake.

The asset body is thin: `chainlake.ingest.ingest` extracts and writes the partition, then the
`chainlake.quality` checks run on what was written and are reported as Dagster asset checks.
"""


import dagster as dg
import polars as pl

from chainlake import quality
from chainlake.ingest import DATASETS, ingest
from chainlake.ingest.lake import partition_range, read_range
from dagster_project.assets.partition_result import partition_result
from dagster_project.partitions import block_ranges
from dagster_project.resources import ChainNode, LakeStore

# Datasets checked against an upstream dataset of the same partition run after it.
UPSTREAM = {"transactions": "blocks", "logs": "transactions"}


def check_specs(name: str) -> list[dg.AssetCheckSpec]:
    specs = [dg.AssetCheckSpec("unique_keys", asset=name, description="no duplicate primary keys")]
    if name == "blocks":
        specs.append(dg.AssetCheckSpec("no_block_gaps", asset=name, description="every block once"))
    if name == "transactions":
        specs.append(dg.AssetCheckSpec("tx_count_matches_blocks", asset=name,
                                       description="tx rows per block = block header's tx count"))
    if name == "logs":
        specs.append(dg.AssetCheckSpec("logs_match_receipts", asset=name,
                                       description="log rows per tx = receipt's log count"))
    return specs


def check_outcomes(name: str, frame: pl.DataFrame, lake_dir, start: int, end: int) -> dict[str, quality.CheckOutcome]:
    outcomes = {"unique_keys": quality.unique_keys(frame, list(DATASETS[name].keys))}
    if name == "blocks":
        outcomes["no_block_gaps"] = quality.no_block_gaps(frame, start, end)
    if name == "transactions":
        blocks = read_range(lake_dir, "blocks", start, end)
        outcomes["tx_count_matches_blocks"] = quality.tx_count_matches_blocks(blocks, frame)
    if name == "logs":
        transactions = read_range(lake_dir, "transactions", start, end)
        outcomes["logs_match_receipts"] = quality.logs_match_receipts(transactions, frame)
    return outcomes


def raw_asset(name: str) -> dg.AssetsDefinition:
    dataset = DATASETS[name]

    @dg.asset(
        name=name,
        partitions_def=block_ranges,
        group_name="raw",
        kinds={"parquet"},
        deps=[UPSTREAM[name]] if name in UPSTREAM else [],
        check_specs=check_specs(name),
        description=dataset.description,
    )
    def _asset(context: dg.AssetExecutionContext, chain: ChainNode, lake: LakeStore) -> dg.MaterializeResult:
        start, end = partition_range(context.partition_key)
        url = chain.url()
        addresses, tokens = lake.tracked(url)
        report = ingest(url, f"{start}:{end + 1}", [name], lake.lake, addresses=addresses, tokens=tokens,
                        partition_size=lake.partition_size_in_use(), **chain.client_options())
        frame = read_range(lake.lake, name, start, end)
        context.log.info(report.summary())
        return partition_result(lake.lake, name, frame, start, end,
                                check_outcomes(name, frame, lake.lake, start, end))

    return _asset


RAW_DATASETS = ["blocks", "transactions", "logs", "traces", "balances"]
raw_assets = [raw_asset(name) for name in RAW_DATASETS]
