"""Mempool assets: txpool snapshots (on a schedule) and the table joining them to the chain."""


import dagster as dg

from chainlake.ingest.mempool import build_mempool, watch
from chainlake.rpc import RpcClient
from dagster_project.resources import ChainNode, LakeStore


class MempoolWatchConfig(dg.Config):
    seconds: float = 50.0
    interval: float = 0.5


@dg.asset(group_name="mempool", kinds={"parquet"},
          description="Pending transactions seen in txpool_content, one file per watch window.")
def mempool_observations(context: dg.AssetExecutionContext, config: MempoolWatchConfig,
                         chain: ChainNode, lake: LakeStore) -> dg.MaterializeResult:
    with RpcClient(chain.url(), **chain.client_options()) as client:
        recorder = watch(client, lake.lake, seconds=config.seconds, interval=config.interval)
    return dg.MaterializeResult(metadata={"snapshots": recorder.snapshots})


@dg.asset(group_name="mempool", kinds={"parquet"}, deps=[mempool_observations, "transactions", "blocks"],
          description="Every tx seen pending, joined to its inclusion block; delay; dropped/replaced.")
def mempool(lake: LakeStore) -> dg.MaterializeResult:
    table = build_mempool(lake.lake)
    statuses = table.group_by("status").aggregate([("transaction_hash", "count")]).to_pylist()
    return dg.MaterializeResult(metadata={
        "rows": table.num_rows,
        "by_status": dg.MetadataValue.json({r["status"]: r["transaction_hash_count"] for r in statuses}),
    })
