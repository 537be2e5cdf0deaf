"""Following the head from Dagster: one asset that runs a `chainlake.follow.follow_step`.

The alternative to the block-range partitions for a lake that must stay at the head: each materialization
rolls back reorged blocks, ingests every followed raw dataset (default: all of them, balances of the
lake's tracked addresses) and decodes the new blocks, rebuilds the features (the same library call as
`chainlake follow`), and records the final watermark in `_follow.json`. `head_follow_sensor` requests it
whenever the node's head has moved past the lake's.
"""

import dagster as dg

from chainlake.follow import FOLLOW_DATASETS, follow_step
from chainlake.rpc import RpcClient
from dagster_project.resources import ChainNode, LakeStore


class FollowConfig(dg.Config):
    confirmations: int = 12
    features: bool = True
    datasets: list[str] = list(FOLLOW_DATASETS)


@dg.asset(group_name="follow", kinds={"parquet"},
          description="The lake caught up with the node's head: reorged blocks rolled back, new blocks ingested "
                      "(every raw dataset) and decoded, mempool and features rebuilt, blocks `confirmations` "
                      "below the head recorded as final (chainlake.follow.follow_step).")
def chain_head(context: dg.AssetExecutionContext, config: FollowConfig, chain: ChainNode,
               lake: LakeStore) -> dg.MaterializeResult:
    url = chain.url()
    addresses, tokens = lake.tracked(url)
    with RpcClient(url, **chain.client_options()) as client:
        step = follow_step(client, url, lake.lake, confirmations=config.confirmations, features=config.features,
                           datasets=config.datasets, addresses=addresses, tokens=tokens,
                           partition_size=lake.partition_size_in_use())
    context.log.info(step.summary())
    return dg.MaterializeResult(metadata={
        "head": step.head, "fork": step.fork if step.fork is not None else -1, "rows_rolled_back": step.rolled_back,
        "ingested": str(step.ingested) if step.ingested else "up to date", "finalized": step.finalized,
        "seconds": round(step.seconds, 3), "features": dg.MetadataValue.json(step.features)})
