"""The agent end to end on the session devnet's lake: train, store, backtest, CLI, Dagster assets, sensor.

The algorithms are tested on hand-made cases in test_rl_*.py; here they run on real chain data through
the same entry points as the demo, the CLI and the schedule.
"""

from __future__ import annotations

import json
import shutil

import dagster as dg
import polars as pl
import pytest
from typer.testing import CliRunner

from chainlake.catalog import query
from chainlake.cli import app
from chainlake.errors import ConfigError
from rl.pipeline import POLICIES, AgentConfig, evaluate, train, write_results
from rl.policy_store import list_policies, load_policy

SMALL = AgentConfig(walk_forward_folds=2, regime_test_rows=60)


@pytest.fixture(scope="module")
def trained(feature_lake, tmp_path_factory):
    lake, _ = feature_lake
    models = tmp_path_factory.mktemp("models")
    return lake, models, train(lake, SMALL, models)


def test_every_policy_is_stored_with_its_data_range(trained):
    lake, models, result = trained
    assert set(list_policies(models)) == {f"policy_{n}" for n in POLICIES}
    train_rows = result.split.train
    assert train_rows.stop + result.split.embargo <= result.split.validation.start  # embargo kept
    for name in POLICIES:
        stored = load_policy(f"policy_{name}", models_dir=models)
        meta = stored.meta
        assert meta["pool"] == result.episode.market.pool and meta["features"] == list(result.episode.feature_names)
        assert meta["trained_blocks"] == [int(result.episode.as_of[train_rows.start]),
                                          int(result.episode.as_of[train_rows.stop - 1])]
        assert meta["trained_blocks"][1] < meta["test_blocks"][0]
    dp = load_policy("policy_tabular", models_dir=models).meta["report"]
    assert dp["policies_agree"] == 1.0 and dp["policy_iteration"]["converged"]


def test_retraining_the_same_data_gives_the_same_artifacts(trained):
    lake, models, result = trained
    again = train(lake, SMALL, models)
    for name in POLICIES:  # the version's hash part covers meta and arrays
        assert again.stored[name].version.split("-")[1] == result.stored[name].version.split("-")[1]


def test_backtest_out_of_sample_with_baselines(trained, tmp_path):
    lake, models, result = trained
    evaluation = evaluate(lake, SMALL, models)
    table = evaluation.results
    holdout = table.filter(pl.col("fold_kind") == "holdout")
    assert set(holdout.get_column("policy")) == {*POLICIES, "buy_and_hold", "always_hold", "random", "momentum"}
    test_first = int(result.episode.as_of[result.split.test.start])
    assert holdout.get_column("first_block").min() == test_first  # never the training blocks
    always = holdout.filter(pl.col("policy") == "always_hold").row(0, named=True)
    assert always["total_return"] == 0 and always["n_trades"] == 0
    rand = holdout.filter(pl.col("policy") == "random").row(0, named=True)
    assert rand["n_trades"] > 0 and rand["fees_paid"] > 0 and rand["gas_paid"] > 0 and rand["pnl_gross"] > rand["pnl_net"]
    assert "walk_forward" in set(table.get_column("fold_kind"))
    lake_copy = tmp_path / "lake"
    shutil.copytree(lake, lake_copy)
    path, png = write_results(lake_copy, evaluation, tmp_path / "models")
    assert pl.read_parquet(path).height == table.height and png.read_bytes()[:4] == b"\x89PNG"


def test_backtest_refuses_policies_trained_on_the_test_window(trained, tmp_path):
    lake, models, _ = trained
    shutil.copytree(models, tmp_path / "m")
    # a policy whose recorded training data reaches into the test window (trained with other split settings)
    stored = load_policy("policy_supervised", models_dir=tmp_path / "m")
    meta = json.loads((stored.path / "meta.json").read_text())
    meta["trained_blocks"][1] = meta["test_blocks"][0]
    (stored.path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="inside the test window"):
        evaluate(lake, SMALL, tmp_path / "m", folds=False)
    with pytest.raises(ConfigError, match="no trained policy 'policy_supervised'"):
        evaluate(lake, SMALL, tmp_path / "empty", folds=False)


def test_cli_train_and_backtest(feature_lake, tmp_path):
    lake, _ = feature_lake
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    runner = CliRunner()
    models = ["--models", str(tmp_path / "models")]
    out = runner.invoke(app, ["train", "--lake", str(work), *models])
    assert out.exit_code == 0, out.output
    assert "policy_tabular" in out.output and "policy_iteration" in out.output
    out = runner.invoke(app, ["backtest", "--lake", str(work), "--no-folds", "--json", *models])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["policy"] for r in rows} >= {"tabular", "buy_and_hold"} and all(r["fold_kind"] == "holdout" for r in rows)
    seen = query("select count(*) as n from backtest_results", tmp_path / "chainlake.duckdb", work).to_pylist()
    assert seen == [{"n": len(rows)}]
    bad = runner.invoke(app, ["backtest", "--lake", str(work), "--pool", "0x" + "12" * 20, *models])
    assert bad.exit_code == 2 and "error: pool 0x1212" in bad.output


def test_dagster_agent_assets_and_sensor(feature_lake, tmp_path):
    from dagster_project.definitions import defs
    from dagster_project.resources import AgentSettings, LakeStore
    from dagster_project.sensors import new_blocks_retrain_sensor

    lake, _ = feature_lake
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey("training_frame") in graph.get(dg.AssetKey("policy_tabular")).parent_keys
    assert dg.AssetKey("policy_sarsa") in graph.get(dg.AssetKey("backtest_report")).parent_keys
    lake_res = LakeStore(lake_dir=str(work), catalog_path=str(tmp_path / "c.duckdb"))
    agent = AgentSettings(models_dir=str(tmp_path / "models"), walk_forward_folds=2, min_new_blocks=50)
    # never trained: the sensor asks for a run
    context = dg.build_sensor_context(resources={"lake": lake_res, "agent": agent})
    assert isinstance(new_blocks_retrain_sensor(context), dg.RunRequest)
    selection = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                 and {k.path[0] for k in a.keys} & {"training_frame", "policy_tabular", "backtest_report"}]
    result = dg.materialize(selection, resources={"lake": lake_res, "agent": agent},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    report = [e for e in result.get_asset_materialization_events()
              if e.materialization.asset_key == dg.AssetKey("backtest_report")][0].materialization
    assert report.metadata["rows"].value > 0 and "data:image/png;base64," in report.metadata["equity_curve"].value
    # just trained on everything there is: nothing to do until min_new_blocks more blocks land
    assert isinstance(new_blocks_retrain_sensor(context), dg.SkipReason)


def test_stale_features_are_refused(feature_lake, tmp_path):
    """Features built before the newest blocks would turn null in the test window: refuse, name the view."""
    from chainlake.features import load_registry, state_path
    from rl.data import load_episode
    from rl.pipeline import default_pool

    lake, _ = feature_lake
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    path = state_path(work, load_registry().get("realized_vol_64"))
    state = pl.read_parquet(path)
    state.filter(pl.col("block_number") < state.get_column("block_number").max() - 20).write_parquet(path)
    with pytest.raises(ConfigError, match=r"realized_vol_64.* is built through block \d+, but the lake reaches"):
        load_episode(work, default_pool(work))


def test_episode_rows_meet_a_strided_training_frame(feature_lake, tmp_path):
    from chainlake.features.frames import build_training_frame
    from rl.data import load_episode
    from rl.pipeline import default_pool

    lake, _ = feature_lake
    frame, _ = build_training_frame(lake, stride=3, out=tmp_path / "frame.parquet")
    episode = load_episode(lake, default_pool(lake), stride=3, frame=frame)
    assert len(episode) > 10 and (episode.as_of % 3 == 0).all()


def test_latency_zero_with_mempool_features_is_refused():
    with pytest.raises(ConfigError, match="latency 0 with mempool features"):
        AgentConfig(latency_blocks=0)
    AgentConfig(latency_blocks=0, features=("mid_price:log_return_1",), stride=1)  # fine without them
