"""One partitioned asset per decoded table, on the same block-range partitions as the raw assets, plus
`mempool_swaps` (unpartitioned, like the `mempool` table it decodes).

Thin, like the raw assets: `chainlake.decode.decode` reads the partition's raw rows from the lake and
writes the decoded partition; the node is asked only for token/pool metadata not cached yet. Each asset
depends on the raw assets it reads, so a job selecting both groups runs raw first.
"""

import dagster as dg
import polars as pl

from chainlake import quality
from chainlake.decode import TABLES, abi, decode
from chainlake.decode.mempool_swaps import build_mempool_swaps
from chainlake.ingest.lake import partition_range, read_range
from dagster_project.assets.partition_result import partition_result
from dagster_project.partitions import block_ranges
from dagster_project.resources import ChainNode, LakeStore

DECODED_TABLES = ["erc20_transfers", "dex_swaps", "pool_reserves", "liquidity_events", "mev_sandwiches"]
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
    if name == "mev_sandwiches":
        specs.append(dg.AssetCheckSpec("legs_ordered", asset=name,
                                       description="front < victim < back in tx index, one attacker per sandwich"))
    return specs


def check_outcomes(name: str, frame: pl.DataFrame, logs: pl.DataFrame) -> dict[str, quality.CheckOutcome]:
    outcomes = {"unique_keys": quality.unique_keys(frame, list(TABLES[name].keys))}
    if name in SOURCE_EVENTS:
        expected = logs.filter(pl.any_horizontal(abi.shape_filter(e) for e in SOURCE_EVENTS[name])).height
        outcomes["rows_match_logs"] = quality.CheckOutcome(
            frame.height == expected, f"{frame.height} rows vs {expected} matching logs",
            {"rows": frame.height, "logs": expected})
    if name == "mev_sandwiches":
        outcomes["legs_ordered"] = legs_ordered(frame)
    return outcomes


def legs_ordered(frame: pl.DataFrame) -> quality.CheckOutcome:
    """Every sandwich row has front < victim < back (tx index), and its victim is not the attacker."""
    bad = frame.filter(~((pl.col("front_transaction_index") < pl.col("victim_transaction_index"))
                         & (pl.col("victim_transaction_index") < pl.col("back_transaction_index"))
                         & (pl.col("victim_from") != pl.col("attacker")))).height
    return quality.CheckOutcome(bad == 0, f"{bad} of {frame.height} rows out of order or self-sandwiched",
                                {"bad": bad, "rows": frame.height})


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


@dg.asset(
    group_name="decoded", kinds={"parquet", "polars"}, deps=["mempool"],
    check_specs=[dg.AssetCheckSpec("unique_keys", asset="mempool_swaps", description="one row per tx hash"),
                 dg.AssetCheckSpec("rows_match_selectors", asset="mempool_swaps",
                                   description="at most one row per mempool tx with a router swap selector")],
    description="Pending UniswapV2Router02 swaps decoded from the mempool table's calldata: function, amounts, "
                "path, recipient, deadline, first seen, inclusion, delay, status.",
)
def mempool_swaps(lake: LakeStore) -> dg.MaterializeResult:
    frame = pl.from_arrow(build_mempool_swaps(lake.lake))
    source = lake.lake / "mempool" / "data.parquet"
    candidates = (pl.scan_parquet(source).filter(pl.col("input").str.slice(0, 10).str.to_lowercase()
                                                 .is_in(list(abi.ROUTER_SWAPS))).select(pl.len()).collect().item()
                  if source.exists() else 0)
    outcomes = {
        "unique_keys": quality.unique_keys(frame, ["transaction_hash"]),
        "rows_match_selectors": quality.CheckOutcome(
            frame.height <= candidates, f"{frame.height} decoded of {candidates} router swap selectors "
                                        f"({candidates - frame.height} malformed calldata skipped)",
            {"rows": frame.height, "candidates": candidates}),
    }
    by_function = frame.group_by("function").len().sort("function").to_dicts() if frame.height else []
    return dg.MaterializeResult(
        metadata={"rows": frame.height, "path": dg.MetadataValue.path(str(lake.lake / "mempool_swaps")),
                  "by_function": dg.MetadataValue.json({r["function"]: r["len"] for r in by_function})},
        check_results=[dg.AssetCheckResult(check_name=k, passed=o.passed, description=o.description,
                                           metadata=o.metadata) for k, o in outcomes.items()],
    )
