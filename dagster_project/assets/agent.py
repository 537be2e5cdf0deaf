"""The trading agent as assets: `policy_*` (trained together on the training frame) and `backtest_report`.

Thin: `rl.pipeline` trains, stores versioned artifacts under warehouse/models/, and evaluates. The
policies read the `training_frame` asset's file, so the lineage in the UI is the data's real path.
"""

import base64

import dagster as dg
import polars as pl

from dagster_project.resources import AgentSettings, LakeStore

POLICIES = ("supervised", "linear", "tabular", "q_learning", "sarsa")
DESCRIPTIONS = {
    "supervised": "Initial policy: logistic regression on pre-labels (future net return over a horizon vs a "
                  "threshold), train split only.",
    "linear": "Linear Q function (fitted-Q iteration on standardized features): covers states the table cannot.",
    "tabular": "Tabular MDP from quantile-binned features, solved by policy iteration (checked against value "
               "iteration), started from the supervised policy.",
    "q_learning": "Tabular Q-learning on the trading env, Q-table started from the supervised policy.",
    "sarsa": "Tabular SARSA on the trading env, Q-table started from the supervised policy.",
}


def _policy_metadata(stored, report: dict) -> dict:
    meta = stored.meta
    out = {"version": stored.version, "path": dg.MetadataValue.path(str(stored.path)), "pool": meta["pool"],
           "trained_blocks": str(meta["trained_blocks"]), "test_blocks": str(meta["test_blocks"]),
           "features": dg.MetadataValue.json(meta["features"])}
    for key, value in report.items():  # training report: accuracy, convergence, agreement with DP
        if isinstance(value, (int, float, bool, str)):
            out[key] = value
        elif isinstance(value, dict) and key != "histories":
            out[key] = dg.MetadataValue.json(value)
    return out


@dg.multi_asset(
    outs={f"policy_{name}": dg.AssetOut(group_name="policies", kinds={"numpy"}, description=DESCRIPTIONS[name],
                                        is_required=True) for name in POLICIES},
    deps=["training_frame"],
)
def policies(context: dg.AssetExecutionContext, lake: LakeStore, agent: AgentSettings):
    """Every learner on the train rows of the holdout split; each policy a new version in warehouse/models/."""
    from rl.pipeline import train

    frame_path = lake.lake / "training_frame" / "data.parquet"
    frame = pl.read_parquet(frame_path) if frame_path.exists() else None
    result = train(lake.lake, agent.config(), agent.models, frame=frame)
    context.log.info(f"trained on pool {result.episode.market.pool}, split {result.split.as_dict()}")
    for name in POLICIES:
        stored = result.stored[name]
        yield dg.MaterializeResult(asset_key=f"policy_{name}",
                                   metadata=_policy_metadata(stored, result.report.get(name, {})))


@dg.asset(
    group_name="evaluation", kinds={"duckdb", "parquet"}, deps=[f"policy_{n}" for n in POLICIES],
    description="Out-of-sample backtests: stored policies and baselines (buy-and-hold, always-hold, random, "
                "momentum) on the holdout test rows, plus walk-forward and bull->bear / bear->bull folds with "
                "every learner retrained per fold. Table backtest_results in the catalog; equity chart as PNG.",
)
def backtest_report(context: dg.AssetExecutionContext, lake: LakeStore, agent: AgentSettings) -> dg.MaterializeResult:
    from rl.pipeline import evaluate, summary, write_results
    from rl.report import markdown_table

    frame_path = lake.lake / "training_frame" / "data.parquet"
    frame = pl.read_parquet(frame_path) if frame_path.exists() else None
    evaluation = evaluate(lake.lake, agent.config(), agent.models, frame=frame)
    path, png = write_results(lake.lake, evaluation, agent.models)
    table = summary(evaluation.results)
    context.log.info(f"backtest_results: {evaluation.results.height} rows -> {path}")
    image = base64.b64encode(png.read_bytes()).decode()
    return dg.MaterializeResult(metadata={
        "rows": evaluation.results.height, "path": dg.MetadataValue.path(str(path)),
        "equity_png": dg.MetadataValue.path(str(png)),
        "equity_curve": dg.MetadataValue.md(f"![equity and drawdown](data:image/png;base64,{image})"),
        "holdout": dg.MetadataValue.md(markdown_table(table, None)),
        "policy_versions": dg.MetadataValue.json(evaluation.versions),
    })
