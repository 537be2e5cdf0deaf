"""Paper trading as an asset: `paper_ledger`, one micro-batch of `rl.paper.catch_up` per materialization.

`chain_head` keeps the lake at the node's head; each time it materializes, `paper_trading_sensor` requests
`paper_job`, which advances the newest paper run of the configured policy through the new heads (the state
is kept in the lake, so runs continue across materializations) and rebuilds the catalog's `paper_ledger`.
For decisions timed in real time, use `chainlake paper`, which decides inside the follow loop.
"""

import dagster as dg

from chainlake.catalog import build_catalog
from dagster_project.resources import AgentSettings, LakeStore


class PaperConfig(dg.Config):
    policy: str = "supervised"
    capital: float = 0.0  # quote units; 0: the trained share of the pool's quote reserve


@dg.asset(group_name="trading", kinds={"parquet"}, deps=["chain_head", "policy_supervised"],
          description="Paper trading: the policy on each new head, filled by the backtester's execution model "
                      "(latency, fee, gas, slippage, liquidity cap); ledger with running Sharpe, drawdown, VaR.")
def paper_ledger(context: dg.AssetExecutionContext, config: PaperConfig, lake: LakeStore,
                 agent: AgentSettings) -> dg.MaterializeResult:
    from rl.paper import catch_up

    report = catch_up(lake.lake, config.policy, models_dir=agent.models, capital=config.capital or None)
    build_catalog(lake.lake, lake.catalog)
    context.log.info(report.text())
    summary = {k: v for k, v in report.summary.items() if isinstance(v, (int, float)) and v is not None}
    return dg.MaterializeResult(metadata={"run_id": report.run_id, "heads": report.heads,
                                          "path": dg.MetadataValue.path(str(report.path)), **summary})


paper_job = dg.define_asset_job("paper_job", selection=dg.AssetSelection.assets("paper_ledger"),
                                executor_def=dg.in_process_executor,
                                description="Advance the paper-trading run through the lake's new heads.")


@dg.asset_sensor(asset_key=dg.AssetKey("chain_head"), job=paper_job, minimum_interval_seconds=10,
                 default_status=dg.DefaultSensorStatus.STOPPED)
def paper_trading_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, agent: AgentSettings):
    """After each `chain_head` materialization, once a policy is trained, paper-trade the new heads."""
    from rl.policy_store import list_policies

    if "policy_supervised" not in list_policies(agent.models):
        return dg.SkipReason("no trained policy yet: materialize the policy assets (retrain_job) first")
    return dg.RunRequest(run_key=f"paper-{asset_event.run_id}")
