"""The one place where chainlake's assets, checks, resources, jobs, schedules and sensors meet."""

import dagster as dg

from dagster_project.assets.agent import backtest_report, policies
from dagster_project.assets.catalog import lake_catalog_asset
from dagster_project.assets.decoded import decoded_assets, mempool_swaps
from dagster_project.assets.features import load_feature_assets
from dagster_project.assets.follow import chain_head
from dagster_project.assets.mempool import mempool, mempool_observations
from dagster_project.assets.raw import raw_assets
from dagster_project.assets.trading import paper_job, paper_ledger, paper_trading_sensor
from dagster_project.resources import AgentSettings, ChainNode, LakeStore
from dagster_project.sensors import (
    block_partitions_sensor,
    block_range_job,
    features_job,
    features_schedule,
    follow_job,
    head_follow_sensor,
    mempool_job,
    mempool_schedule,
    new_blocks_retrain_sensor,
    retrain_job,
    retrain_schedule,
)

feature_assets, feature_keys = load_feature_assets()  # one asset per file in sql/ and features/

defs = dg.Definitions(
    assets=[*raw_assets, *decoded_assets, mempool_observations, mempool, mempool_swaps, *feature_assets,
            policies, backtest_report, chain_head, paper_ledger, lake_catalog_asset(feature_keys)],
    resources={"chain": ChainNode(), "lake": LakeStore(), "agent": AgentSettings()},
    jobs=[block_range_job, mempool_job, features_job, retrain_job, follow_job, paper_job],
    sensors=[block_partitions_sensor, new_blocks_retrain_sensor, head_follow_sensor, paper_trading_sensor],
    schedules=[mempool_schedule, features_schedule, retrain_schedule],
    executor=dg.in_process_executor,
)
