"""`make demo` end to end, shrunk: a fresh devnet, the market, every asset through Dagster, the summary."""

import io

import dagster as dg
import pytest
from rich.console import Console

from chainlake.catalog import query
from chainlake.errors import ConfigError
from chainlake.ingest import LakeConfig
from chainlake.ingest.lake import write_lake_config
from dagster_project.demo import reset_devnet_lake, run_demo


def test_demo_fills_the_lake_and_the_dagster_instance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo writes warehouse/devnet.json under the working directory
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("ETH_RPC_URL", "http://127.0.0.1:9")  # the demo must stay on its own devnet
    lake, catalog = tmp_path / "lake", tmp_path / "c.duckdb"
    keys = run_demo(blocks=210, seed=3, txs_per_block=5, lake_dir=lake, catalog_path=catalog, partition_size=100)
    assert keys == ["000000000000-000000000099", "000000000100-000000000199"]
    counts = query("select (select count(*) from blocks) as b, (select count(*) from mempool) as m, "
                   "(select count(*) from mempool where status = 'included') as inc, "
                   "(select count(*) from balances) as bal", catalog, lake).to_pylist()[0]
    # the partitions hold blocks 0..199; paper and live trading then followed the head past them
    assert counts["b"] > 200 and counts["m"] >= counts["inc"] > 0 and counts["bal"] > 0
    ledgers = query("select (select count(*) from paper_ledger) as p, (select count(distinct policy) from paper_ledger) "
                    "as pp, (select count(*) from live_ledger) as l, (select count(*) from live_ledger "
                    "where kind = 'swap' and status = 'mined') as mined", catalog, lake).to_pylist()[0]
    assert ledgers["p"] > 0 and ledgers["pp"] == 2 and ledgers["l"] > 0 and ledgers["mined"] > 0
    policies = query("select distinct policy from backtest_results where fold_kind = 'holdout'", catalog, lake)
    assert {"tabular", "q_learning", "buy_and_hold", "momentum"} <= set(policies.column("policy").to_pylist())
    instance = dg.DagsterInstance.get()
    for name in ("blocks", "transactions", "logs", "traces", "balances", "erc20_transfers", "dex_swaps",
                 "pool_reserves", "liquidity_events", "mev_sandwiches"):
        materialized = instance.get_materialized_partitions(dg.AssetKey(name))
        assert materialized == set(keys)
    for name in ("mempool_observations", "mempool", "mempool_swaps", "feature_mid_price", "training_frame",
                 "policy_tabular", "backtest_report", "lake_catalog"):
        assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None
    # A second run replaces the earlier devnet's lake instead of mixing two chains.
    run_demo(blocks=100, seed=4, txs_per_block=5, lake_dir=lake, catalog_path=catalog, partition_size=100,
             trading=False)
    assert query("select count(*) as n from blocks", catalog, lake).to_pylist() == [{"n": 100}]


def test_demo_never_deletes_what_is_not_a_devnet_lake(tmp_path):
    console = Console(file=io.StringIO())
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a chainlake lake"):
        reset_devnet_lake(precious, 100, console)
    other = tmp_path / "mainnet"
    write_lake_config(other, LakeConfig(chain_id=1, partition_size=1000))
    with pytest.raises(ConfigError, match="holds chain 1"):
        reset_devnet_lake(other, 100, console)
    assert (precious / "notes.txt").read_text() == "keep me" and (other / "_lake.json").exists()
