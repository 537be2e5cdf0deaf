"""Automation: new block-range partitions as the chain grows, and mempool snapshots every minute."""


import dagster as dg
import polars as pl

from chainlake.ingest import finalized_partition_keys
from chainlake.rpc import RpcClient
from dagster_project.partitions import block_ranges
from dagster_project.resources import AgentSettings, ChainNode, LakeStore

block_range_job = dg.define_asset_job(
    "block_range_job", selection=dg.AssetSelection.groups("raw", "decoded") - dg.AssetSelection.assets("mempool_swaps"),
    executor_def=dg.in_process_executor,
    description="One block-range partition: ingest every raw dataset, then decode it into the decoded tables.",
)

mempool_job = dg.define_asset_job(
    "mempool_job", selection=dg.AssetSelection.assets("mempool_observations", "mempool", "mempool_swaps",
                                                           "lake_catalog"),
    executor_def=dg.in_process_executor,
    description="Watch the txpool for a while, then rebuild the mempool table, its decoded swaps and the catalog.",
)

features_job = dg.define_asset_job(
    "features_job", selection=dg.AssetSelection.groups("features", "frames") | dg.AssetSelection.assets("lake_catalog"),
    executor_def=dg.in_process_executor,
    description="Rebuild every feature view's state table (with its checks), the training frame and the catalog.",
)


@dg.sensor(job=block_range_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def block_partitions_sensor(context: dg.SensorEvaluationContext, chain: ChainNode,
                            lake: LakeStore) -> dg.SensorResult | dg.SkipReason:
    """Add every block range that is complete and `confirmations` deep, and request its ingestion."""
    with RpcClient(chain.url(), **chain.client_options()) as client:
        head = client.block_number()
    keys = finalized_partition_keys(head, chain.confirmations, lake.partition_size_in_use())
    known = set(context.instance.get_dynamic_partitions(block_ranges.name))
    new = [key for key in keys if key not in known]
    if not new:
        return dg.SkipReason(f"head {head}: no new final block range")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key) for key in new],
        dynamic_partitions_requests=[block_ranges.build_add_request(new)],
    )


mempool_schedule = dg.ScheduleDefinition(
    name="mempool_schedule",
    job=mempool_job, cron_schedule="* * * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Record ~50 s of txpool snapshots every minute.",
)

features_schedule = dg.ScheduleDefinition(
    name="features_schedule",
    job=features_job, cron_schedule="*/15 * * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuild the features and the training frame from the lake every 15 minutes.",
)


retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups("features", "frames", "policies", "evaluation")
    | dg.AssetSelection.assets("lake_catalog"),
    executor_def=dg.in_process_executor,
    description="Rebuild features and the training frame, retrain every policy, re-run the backtests, refresh "
                "the catalog.",
)

retrain_schedule = dg.ScheduleDefinition(
    name="retrain_schedule", job=retrain_job, cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrain and re-backtest every night at 03:00.",
)


@dg.sensor(job=retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def new_blocks_retrain_sensor(context: dg.SensorEvaluationContext, lake: LakeStore,
                              agent: AgentSettings) -> dg.RunRequest | dg.SkipReason:
    """Retrain once the lake holds `min_new_blocks` blocks past the newest data the policies were trained on."""
    from chainlake.errors import ConfigError
    from chainlake.features.inputs import scan_lake_table
    from rl.policy_store import load_policy

    head = scan_lake_table(lake.lake, "blocks").select(pl.col("block_number").max()).collect().item()
    if head is None:
        return dg.SkipReason("the lake has no blocks yet")
    try:
        trained = load_policy("policy_tabular", models_dir=agent.models).meta["episode_blocks"][1]
    except ConfigError:
        return dg.RunRequest(run_key=f"first-{head}")  # never trained
    if head - trained < agent.min_new_blocks:
        return dg.SkipReason(f"lake head {head}, policies trained on data to {trained}: "
                             f"{head - trained} < {agent.min_new_blocks} new blocks")
    return dg.RunRequest(run_key=f"head-{head}")


follow_job = dg.define_asset_job(
    "follow_job", selection=dg.AssetSelection.assets("chain_head"), executor_def=dg.in_process_executor,
    description="Catch the lake up with the head (reorgs rolled back), then rebuild the features.",
)


@dg.sensor(job=follow_job, minimum_interval_seconds=10, default_status=dg.DefaultSensorStatus.STOPPED)
def head_follow_sensor(context: dg.SensorEvaluationContext, chain: ChainNode,
                       lake: LakeStore) -> dg.RunRequest | dg.SkipReason:
    """Request a `chain_head` run when the node's head is past the lake's newest block, or has a new hash there."""
    from chainlake.ingest.reorg import read_follow_state

    with RpcClient(chain.url(), **chain.client_options()) as client:
        head = client.block_number()
        newest = client.call("eth_getBlockByNumber", [hex(head), False])["hash"].lower()
    state = read_follow_state(lake.lake)  # the head every followed dataset is complete through
    ours = None if state is None else state.head
    if ours is not None and ours >= head and context.cursor == newest:
        return dg.SkipReason(f"lake at {ours}, node head {head}: nothing new")
    context.update_cursor(newest)
    return dg.RunRequest(run_key=f"{head}-{newest}")
