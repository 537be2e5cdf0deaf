"""The one place where chainlake's assets, checks, resources, jobs, schedules and sensors meet."""

import dagster as dg

from dagster_project.assets.catalog import lake_catalog
from dagster_project.assets.decoded import decoded_assets, mempool_swaps
from dagster_project.assets.mempool import mempool, mempool_observations
from dagster_project.assets.raw import raw_assets
from dagster_project.resources import ChainNode, LakeStore
from dagster_project.sensors import block_partitions_sensor, mempool_job, mempool_schedule, block_range_job

defs = dg.Definitions(
    assets=[*raw_assets, *decoded_assets, mempool_observations, mempool, mempool_swaps, lake_catalog],
    resources={"chain": ChainNode(), "lake": LakeStore()},
    jobs=[block_range_job, mempool_job],
    sensors=[block_partitions_sensor],
    schedules=[mempool_schedule],
    executor=dg.in_process_executor,
)
