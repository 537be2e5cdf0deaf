"""Paper trading: the backtester's env, one decision at a time, on blocks as they land.

The contract: paper trading over blocks the backtester also saw gives exactly the backtest's trades and
P&L (same fills, fees, gas, slippage and equity, to the last bit), including the landing block's base fee,
which paper trading must predict from the parent header (EIP-1559) before the block exists.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainlake.catalog import build_catalog, query
from chainlake.errors import ConfigError
from rl.paper import (
    PaperTrader,
    backtest_window,
    load_state,
    next_base_fee,
    replay,
    run_paper,
)
from rl.pipeline import agent_episode
from rl.trader import PolicyRunner, order_quantity


def backtest_and_paper(lake, models, name, rows=80):
    runner = PolicyRunner(lake, name, models_dir=models)
    episode = agent_episode(lake, runner.config)
    first, last = int(episode.as_of[-rows - 10]), int(episode.as_of[-11])
    capital = runner.config.env_config(episode).initial_quote
    result = backtest_window(runner, first, last, capital)
    trader = replay(runner, range(first - 1, last + runner.stride), capital=capital)
    return result, trader


@pytest.mark.parametrize("name", ["momentum", "random", "supervised", "tabular"])
def test_paper_trading_reproduces_the_backtest(trained_models, name):
    """Learned policies and the baselines (which trade on most blocks), as in `chainlake paper --policy`."""
    lake, models, _ = trained_models
    result, trader = backtest_and_paper(lake, models, name)
    ledger = trader.ledger()
    fills = ledger.filter(pl.col("traded"))
    assert ledger.height == result.n_steps
    assert np.array_equal(ledger.get_column("decision_block").to_numpy(), result.blocks[:-1])
    assert np.array_equal(ledger.get_column("equity").to_numpy(), result.equity[1:])
    assert np.array_equal(ledger.get_column("equity_gross").to_numpy(), result.equity_gross[1:])
    assert np.array_equal(fills.get_column("exec_block").to_numpy(), result.ledger.get_column("block").to_numpy())
    for column in ("base_delta", "quote_delta", "fee", "gas", "slippage"):
        assert np.array_equal(fills.get_column(column).to_numpy(), result.ledger.get_column(column).to_numpy()), column
    if name in ("momentum", "random"):
        assert fills.height >= 10 and fills.get_column("base_fee_predicted").all()
        assert ledger.get_column("sharpe").drop_nulls().len() == ledger.height - 1
        assert (ledger.get_column("max_drawdown") >= 0).all()


def test_a_run_continues_from_its_saved_state(trained_models, tmp_path):
    """Stopping and resuming (state saved in the lake) gives the same ledger as one uninterrupted run."""
    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    runner = PolicyRunner(work, "momentum", models_dir=models)
    head = int(pl.read_parquet(work / "blocks").get_column("block_number").max())
    heads = range(head - 60, head - 20)
    whole = replay(runner, heads)
    first = PaperTrader(runner)
    for h in heads[:17]:
        first.on_head(h)
    first.save(work)
    second = PaperTrader(runner, load_state(work, first.state.run_id))
    for h in heads[17:]:
        second.on_head(h)
    path = second.save(work)
    saved = pl.read_parquet(path).drop("run_id", "decided_at", "decision_ms")
    assert saved.equals(whole.ledger().drop("run_id", "decided_at", "decision_ms"))
    build_catalog(work, tmp_path / "c.duckdb")
    count = query("SELECT count(*) AS n FROM paper_ledger", tmp_path / "c.duckdb", work).column("n")[0].as_py()
    assert count == saved.height


def test_a_stale_feature_store_is_refused(trained_models, tmp_path):
    """Features built only through an older block than the decision needs are an error, not silent nulls."""
    from chainlake.features import build_features

    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    head = int(pl.read_parquet(work / "blocks").get_column("block_number").max())
    build_features(work, upto=head - 5)
    runner = PolicyRunner(work, "tabular", models_dir=models)
    assert np.isfinite(runner.features_at(head - 4)).any()
    with pytest.raises(ConfigError, match=f"built through block {head - 5}"):
        runner.features_at(head)


@given(base_fee=st.integers(1, 10**12), limit=st.integers(2, 60_000_000), share=st.floats(0, 1))
@settings(max_examples=200, deadline=None)
def test_next_base_fee_moves_at_most_an_eighth_toward_the_target(base_fee, limit, share):
    target = limit // 2
    used = int(2 * target * share)
    nxt = next_base_fee(base_fee, used, limit)
    assert abs(nxt - base_fee) <= max(base_fee // 8, 1)
    assert nxt > base_fee if used > target else nxt <= base_fee


def test_next_base_fee_matches_every_header_of_the_devnet(feature_lake):
    lake, _ = feature_lake
    blocks = pl.read_parquet(lake / "blocks").sort("block_number").filter(pl.col("block_number") >= 1)  # block 1: 1 gwei, set by the fork
    rows = blocks.select("base_fee_per_gas", "gas_used", "gas_limit").rows()
    predicted = [next_base_fee(*row) for row in rows[:-1]]
    assert predicted == blocks.get_column("base_fee_per_gas").to_list()[1:]
    assert len(set(predicted)) > 3  # the base fee actually moved


@given(action=st.sampled_from([0, 1, 2]), base=st.floats(0, 100), size=st.floats(0.01, 10), cap=st.floats(0, 100))
def test_order_quantity_keeps_the_position_limits(action, base, size, cap):
    qty = order_quantity(action, base, size, cap)
    assert abs(qty) <= size
    assert base + qty >= -1e-12
    if qty > 0:
        assert base + qty <= max(cap, base) + 1e-9


def test_paper_run_on_a_live_node(trained_models, devnet, tmp_path):
    """`run_paper` follows the node while blocks are mined: decisions every block, fills settled, the ledger
    in the catalog, each decision timed from the head's arrival."""
    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    # one block per 1.2 s: time for a follow step (ingest, decode, features) and a decision in between
    miner = threading.Thread(target=devnet.devnet.market.run, args=(8,), kwargs={"block_time": 1.2})
    miner.start()
    try:
        report = run_paper(work, devnet.url, "supervised", blocks=6, models_dir=models, timeout=90,
                           confirmations=4, interval=0.1, datasets=["blocks", "transactions", "logs"])
    finally:
        miner.join()
    assert report.heads >= 6 and report.summary["decisions"] >= 4
    assert report.summary["decisions"] + report.summary["missed"] >= report.heads - 1
    ledger = report.ledger
    assert ledger.get_column("decision_ms").drop_nulls().len() >= 4
    assert ledger.get_column("decision_block").is_sorted() and ledger.get_column("decision_block").n_unique() == ledger.height
    build_catalog(work, tmp_path / "c.duckdb")
    rows = query("SELECT count(*) AS n FROM paper_ledger", tmp_path / "c.duckdb", work).column("n")[0].as_py()
    assert rows == ledger.height


def test_dagster_paper_asset_continues_its_run(trained_models, tmp_path):
    """`paper_ledger` advances the newest run of the policy through the lake's new heads; the sensor waits for
    a trained policy."""
    import dagster as dg

    from dagster_project.assets.trading import paper_ledger, paper_trading_sensor
    from dagster_project.resources import AgentSettings, LakeStore

    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    head = int(pl.read_parquet(work / "blocks").get_column("block_number").max())
    lake_res = LakeStore(lake_dir=str(work), catalog_path=str(tmp_path / "c.duckdb"))
    agent = AgentSettings(models_dir=str(models))
    runs = []
    for _ in range(2):
        result = dg.materialize([paper_ledger], resources={"lake": lake_res, "agent": agent},
                                instance=dg.DagsterInstance.ephemeral(), selection=[paper_ledger])
        assert result.success
        runs.append(result.get_asset_materialization_events()[0].materialization.metadata["run_id"].value)
    assert runs[0] == runs[1]  # the second materialization found nothing new and kept the same run
    rows = query("SELECT count(*) AS n FROM paper_ledger", tmp_path / "c.duckdb", work).column("n")[0].as_py()
    assert rows == 0  # started at the head: one decision pending, none settled yet
    state = load_state(work, runs[0])
    assert state.last_head == head and state.pending is not None and state.pending.block == head + 1

    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization("chain_head"))
    for models_dir, expected in ((tmp_path / "none", "skip"), (models, "run")):
        context = dg.build_sensor_context(instance=instance, resources={"agent": AgentSettings(models_dir=str(models_dir))})
        tick = paper_trading_sensor.evaluate_tick(context)
        assert (len(tick.run_requests) == 1) == (expected == "run"), tick


def test_cli_paper_errors_are_one_line(trained_models, tmp_path):
    from typer.testing import CliRunner

    from chainlake.cli import app

    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    for args, message in ((["--policy", "nope"], "policy_nope"),
                          (["--policy", "supervised", "--run-id", "missing"], "no paper run 'missing'"),
                          (["--policy", "supervised"], "127.0.0.1:9")):  # nothing listens there
        out = CliRunner().invoke(app, ["paper", *args, "--blocks", "2", "--lake", str(work), "--models", str(models),
                                       "--rpc-url", "http://127.0.0.1:9", "--timeout", "5"])
        assert out.exit_code == 2, out.output
        assert out.output.startswith("error: ") and out.output.count("\n") == 1 and message in out.output, out.output
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before


def test_a_decision_settles_as_decided_when_its_features_changed_since(trained_models, monkeypatch):
    """A late mempool sighting or a rebuilt view can change what the lake says was known at a decision's block;
    the fill is what was decided then, and the row says the features changed."""
    from dataclasses import replace as dc_replace

    lake, models, _ = trained_models
    runner = PolicyRunner(lake, "momentum", models_dir=models)
    head = int(pl.read_parquet(lake / "blocks").get_column("block_number").max()) - 5
    trader = PaperTrader(runner)
    trader.on_head(head)
    decided = trader.state.pending.action
    original = runner.episode_at
    monkeypatch.setattr(runner, "episode_at", lambda block, market: dc_replace(
        original(block, market), features=original(block, market).features * -1.0 + 1.0))
    (row,) = trader.on_head(head + 1)
    assert row["features_changed"] and row["action"] == decided and row["decision_block"] == head + 1


def test_catch_up_undoes_a_reorg_and_trades_the_new_chain(trained_models, tmp_path):
    """A head traded on is replaced (its hash changes in the lake): the batch rewinds the book to before the
    decisions that read it, retracts their rows, and decides them again on the lake as it is now."""
    from rl.paper import catch_up, latest_run

    lake, models, _ = trained_models
    work = tmp_path / "lake"
    shutil.copytree(lake, work)
    head = int(pl.read_parquet(work / "blocks").get_column("block_number").max())
    runner = PolicyRunner(work, "momentum", models_dir=models)
    trader = replay(runner, range(head - 40, head + 1))
    trader.save(work)
    before = pl.read_parquet(trader.save(work))
    fork = head - 12
    # the same block content under a new hash: a reorg that happened to rebuild an identical block
    for path in (work / "blocks").rglob("*.parquet"):
        frame = pl.read_parquet(path)
        if fork in frame.get_column("block_number").to_list():
            frame.with_columns(pl.when(pl.col("block_number") == fork).then(pl.lit("0x" + "ab" * 32))
                               .otherwise(pl.col("block_hash")).alias("block_hash")).write_parquet(path)
    report = catch_up(work, "momentum", models_dir=models)
    state = latest_run(work, "momentum", runner.version)
    assert report.run_id == trader.state.run_id and report.reorgs == 1 and state.rewound >= 12
    after = pl.read_parquet(report.path)
    same = ["decision_block", "action", "traded", "exec_block", "base_delta", "quote_delta", "fee", "gas", "equity"]
    assert after.select(same).equals(before.select(same))  # the new chain's data is the same: so are the trades
    assert after.get_column("decision_block").is_unique().all()
    assert catch_up(work, "momentum", models_dir=models).heads == 0  # nothing new, nothing undone
