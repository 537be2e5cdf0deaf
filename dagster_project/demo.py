"""`make demo`: devnet + market, then every Dagster asset materialized on the instance the UI reads.

Runs through Dagster (not around it) so the runs, materializations and check results are visible
afterwards in `make dev`. The node lives only as long as this function.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
from rich.console import Console
from rich.table import Column, Table

from chainlake.catalog import query
from chainlake.config import DEFAULT_LAYOUT
from chainlake.devnet import DEVNET_CHAIN_ID, Devnet
from chainlake.errors import ChainlakeError, ConfigError
from chainlake.ingest import (
    DEFAULT_PARTITION_SIZE,
    LakeConfig,
    finalized_partition_keys,
    partition_range,
    read_lake_config,
)
from chainlake.ingest.lake import write_lake_config
from chainlake.ingest.mempool import MempoolRecorder
from dagster_project.demo_trading import trading_demo
from rl.report import comparison_table

DEFAULT_DAGSTER_HOME = Path(".dagster_home")


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance in $DAGSTER_HOME (default `.dagster_home`, telemetry off)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DAGSTER_HOME.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def run_market(dn: Devnet, blocks: int, lake_dir: Path, instance: dg.DagsterInstance, console: Console) -> None:
    """Mine `blocks` blocks of market activity, recording every txpool snapshot before each block."""
    recorder = MempoolRecorder(lake_dir)

    def observe(next_block: int, txpool: dict, wall_time: float) -> None:
        # Devnet blocks carry simulated timestamps (12 s apart, from 2023), so the wall clock would give
        # nonsense delays: stamp a sighting mid-way between the head and the block being built.
        recorder.observe(txpool, next_block - 1, dn.market.timestamp + dn.market.interval / 2)

    summary = dn.run(blocks, observers=(observe,))
    path = recorder.flush()
    # The market's hook did the watching, so tell Dagster the observations asset has new data.
    instance.report_runless_asset_event(dg.AssetMaterialization(
        "mempool_observations", metadata={"snapshots": recorder.snapshots, "path": str(path)}))
    console.print(f"market: blocks {summary.first_block}..{summary.last_block}, "
                  f"{sum(summary.txs_sent.values()):,} txs ({summary.tx_per_s:.0f} tx/s), "
                  f"{summary.sandwiches_landed}/{summary.sandwiches_attempted} sandwiches landed; "
                  f"{recorder.snapshots} txpool snapshots recorded")


def materialize_all(url: str, head: int, lake_dir: Path, catalog_path: Path, partition_size: int,
                    instance: dg.DagsterInstance, console: Console) -> list[str]:
    """Add the final partitions and materialize each (raw and decoded assets + checks), then mempool and catalog."""
    from dagster_project.definitions import defs
    from dagster_project.partitions import block_ranges

    # Resources are configured per run, the same way the UI's launchpad would.
    # The node is pinned to this devnet: $ETH_RPC_URL must not redirect the demo to another chain.
    run_config = {
        "resources": {"chain": {"config": {"rpc_url": url}},
                      "lake": {"config": {"lake_dir": str(lake_dir), "catalog_path": str(catalog_path),
                                          "partition_size": partition_size}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    keys = finalized_partition_keys(head, 0, partition_size)
    instance.add_dynamic_partitions(block_ranges.name, keys)
    job = defs.resolve_job_def("block_range_job")
    for key in keys:
        started = time.monotonic()
        result = job.execute_in_process(run_config, instance=instance, partition_key=key)
        failed = [f"{c.asset_key.to_user_string()}.{c.check_name}"
                  for c in result.get_asset_check_evaluations() if not c.passed]
        console.print(f"partition {key}: {len(failed)} failed checks, {time.monotonic() - started:.1f}s")
        if failed:
            raise ChainlakeError(f"partition {key}: asset checks failed: {', '.join(failed)} (see `make dev`)")
    defs.resolve_job_def("mempool_job").execute_in_process(
        run_config, instance=instance, asset_selection=[dg.AssetKey("mempool"), dg.AssetKey("mempool_swaps")],
    )
    started = time.monotonic()
    result = defs.resolve_job_def("retrain_job").execute_in_process(run_config, instance=instance)
    failed = [f"{c.asset_key.to_user_string()}.{c.check_name}"
              for c in result.get_asset_check_evaluations() if not c.passed]
    console.print(f"features, training frame, policies, backtests and catalog: {len(failed)} failed checks, "
                  f"{time.monotonic() - started:.1f}s")
    if failed:
        raise ChainlakeError(f"feature checks failed: {', '.join(failed)} (see `make dev`)")
    return keys


def summary_table(keys: list[str], catalog_path: Path, lake_dir: Path) -> Table:
    first, last = partition_range(keys[0])[0], partition_range(keys[-1])[1]
    head = query("select max(block_number) as hi from blocks", catalog_path, lake_dir).to_pylist()[0]["hi"]
    followed = f", then followed to {head} while trading" if head is not None and head > last else ""
    table = Table("dataset", "rows", "blocks", title=f"lake: blocks {first}-{last} in partitions{followed}")
    for name in ("blocks", "transactions", "logs", "traces", "balances", "erc20_transfers", "dex_swaps",
                 "pool_reserves", "liquidity_events", "mev_sandwiches", "mempool", "mempool_swaps"):
        row = query(f"select count(*) as n, min(block_number) as lo, max(block_number) as hi from {name}"
                    if not name.startswith("mempool") else
                    f"select count(*) as n, min(first_seen_head) as lo, max(first_seen_head) as hi from {name}",
                    catalog_path, lake_dir).to_pylist()[0]
        table.add_row(name, f"{row['n']:,}", f"{row['lo']}-{row['hi']}")
    return table


def features_table(catalog_path: Path, lake_dir: Path) -> Table:
    """One line per feature view: rows, pools, blocks, and how many features it holds."""
    from chainlake.features import load_registry

    table = Table(Column("feature view", no_wrap=True), "rows", "pools", "blocks", "features",
                  title="features (catalog views feature_*; chainlake features show NAME)")
    for view in load_registry().views.values():
        row = query(f"select count(*) as n, count(distinct {view.entity}) as e, min({view.event_time}) as lo, "
                    f"max({view.event_time}) as hi from {view.table}", catalog_path, lake_dir).to_pylist()[0]
        columns = query(f"select * from {view.table} limit 0", catalog_path, lake_dir).column_names
        table.add_row(view.table, f"{row['n']:,}", str(row["e"]), f"{row['lo']}-{row['hi']}",
                      str(len([c for c in columns if c not in (*view.keys, "valid_from", "valid_to")])))
    return table


def reset_devnet_lake(lake_dir: Path, partition_size: int, console: Console) -> None:
    """A new devnet is a new chain: replace a lake left by an earlier devnet run, refuse anything else.

    Only a folder whose `_lake.json` names the devnet's chain id is deleted; the fresh lake gets its
    `_lake.json` at once, so even a demo stopped before ingesting leaves a lake it can recognise.
    """
    config = read_lake_config(lake_dir)
    if config is not None and config.chain_id != DEVNET_CHAIN_ID:
        raise ConfigError(f"{lake_dir} holds chain {config.chain_id}, not the devnet: pass another --lake")
    if config is None and lake_dir.exists() and any(lake_dir.iterdir()):
        raise ConfigError(f"{lake_dir} is not empty and not a chainlake lake: pass another --lake")
    if config is not None:
        console.print(f"replacing the previous devnet lake {lake_dir}")
        shutil.rmtree(lake_dir)
    write_lake_config(lake_dir, LakeConfig(DEVNET_CHAIN_ID, partition_size))


def run_demo(blocks: int, seed: int, txs_per_block: int, lake_dir: Path, catalog_path: Path,
             partition_size: int = DEFAULT_PARTITION_SIZE, trading: bool = True) -> list[str]:
    """Run the demo; returns the partition keys it materialized. `trading`: end with short paper and live
    trading runs (`dagster_project.demo_trading`)."""
    # long lines stay whole in logs and CI output; tables get 140 columns when not on a terminal
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)
    if blocks < partition_size:
        raise ConfigError(f"--blocks {blocks} fills no {partition_size}-block partition: use at least {partition_size}")
    instance = dagster_instance()
    reset_devnet_lake(lake_dir, partition_size, console)
    with Devnet(seed=seed, txs_per_block=txs_per_block) as dn:
        dn.layout.to_json(DEFAULT_LAYOUT)
        console.print(f"devnet: anvil at {dn.url}, layout in {DEFAULT_LAYOUT}")
        run_market(dn, blocks, lake_dir, instance, console)
        keys = materialize_all(dn.url, dn.market.head, lake_dir, catalog_path, partition_size, instance, console)
        if trading:
            started = time.monotonic()
            trading_table = trading_demo(dn, lake_dir, catalog_path, console)
            console.print(f"paper and live trading: {time.monotonic() - started:.1f}s")
    console.print(summary_table(keys, catalog_path, lake_dir))
    console.print(features_table(catalog_path, lake_dir))
    frame = query("select count(*) as n from training_frame", catalog_path, lake_dir).to_pylist()[0]["n"]
    console.print(f"training frame: {frame:,} rows (pool x block, every feature as known at that block)")
    console.print(comparison_table(pl.from_arrow(query("select * from backtest_results", catalog_path, lake_dir))))
    if trading:
        console.print(trading_table)
        for name in ("paper_ledger", "live_ledger"):
            n = query(f"select count(*) as n from {name}", catalog_path, lake_dir).to_pylist()[0]["n"]
            console.print(f"{name}: {n} rows (chainlake sql \"select * from {name}\")")
    console.print(f"lake:    {lake_dir.resolve()}")
    console.print(f"catalog: {catalog_path.resolve()}")
    console.print('try:     .venv/bin/chainlake sql "select address, count(*) from logs group by 1"')
    console.print("         .venv/bin/chainlake features list; .venv/bin/chainlake features show realized_vol_64")
    console.print("UI: make dev, then open http://127.0.0.1:3000")
    return keys
