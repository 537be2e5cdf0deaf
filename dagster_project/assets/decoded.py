"""One partitioned asset per decoded table, on the same block-range partitions as the raw assets.

Thin, like the raw assets: `chainlake.decode.decode` reads the partition's raw rows from the lake and
writes the decoded partition; the node is asked only for token/pool metadata not cached yet. Each asset
depends on the raw assets it reads, so a job selecting both groups runs raw first.
"""

import dagster as dg
import polars as pl

from chainlake import quality
from chainlake.decode import TABLES, abi, decode
from chainlake.ingest.lake import partition_range, read_range
from dagster_project.assets.partition_result import partition_result
from dagster_project.partitions import block_ranges
from dagster_project.resources import ChainNode, LakeStore

DECODED_TABLES = ["erc20_transfers", "dex_swaps", "pool_reserves", "liquidity_events"]
# Per table: the logs each decoded row comes from (one row per matching log, except pool_reserves).
SOURCE_EVENTS = {
    "erc20_transfers": [abi.TRANSFER],
    "dex_swaps": [abi.V2_SWAP, abi.V3_SWAP],
    "liquidity_events": [abi.V2_MINT, abi.V2_BURN, abi.V3_MINT, abi.V3_BURN],
}


def check_specs(name: str) -> list[dg.AssetCheckSpec]:
    specs = [dg.AssetCheckSpec("unique_keys", asset=name, description="no duplicate primary keys")]
    if name in SOURCE_EVENTS:
        specs.append(dg.AssetCheckSpec("rows_match_logs", asset=name,
                                       description="one row per log of the decoded events (by ABI shape)"))
    return specs


def check_outcomes(name: str, frame: pl.DataFrame, logs: pl.DataFrame) -> dict[str, quality.CheckOutcome]:
    outcomes = {"unique_keys": quality.unique_keys(frame, list(TABLES[name].keys))}
    if name in SOURCE_EVENTS:
        expected = logs.filter(pl.any_horizontal(abi.shape_filter(e) for e in SOURCE_EVENTS[name])).height
        outcomes["rows_match_logs"] = quality.CheckOutcome(
            frame.height == expected, f"{frame.height} rows vs {expected} matching logs",
            {"rows": frame.height, "logs": expected})
    return outcomes


def decoded_asset(name: str) -> dg.AssetsDefinition:
    table = TABLES[name]

    @dg.asset(
        name=name,
        partitions_def=block_ranges,
        group_name="decoded",
        kinds={"parquet", "polars"},
        deps=list(table.reads),
        check_specs=check_specs(name),
        description=table.description,
    )
    def _asset(context: dg.AssetExecutionContext, chain: ChainNode, lake: LakeStore) -> dg.MaterializeResult:
        start, end = partition_range(context.partition_key)
        # The node (configured, else $ETH_RPC_URL, else the devnet) is resolved only if metadata is missing.
        report = decode(lake.lake, (start, end), [name], rpc_url=chain.rpc_url or None, **chain.client_options())
        context.log.info(report.summary())
        frame = read_range(lake.lake, name, start, end)
        logs = read_range(lake.lake, "logs", start, end)
        return partition_result(lake.lake, name, frame, start, end, check_outcomes(name, frame, logs))

    return _asset


decoded_assets = [decoded_asset(name) for name in DECODED_TABLES]
