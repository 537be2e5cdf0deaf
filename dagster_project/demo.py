"""`make demo`: devnet + market, then every Dagster asset materialized on the instance the UI reads.

Runs through Dagster (not around it) so the runs, materializations and check results are visible
afterwards in `make dev`. The node lives only as long as this function.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
from rich.console import Console
from rich.table import Table

from chainlake.catalog import query
from chainlake.config import DEFAULT_LAYOUT
from chainlake.devnet import Devnet
from chainlake.ingest.lake import finalized_partition_keys, lake_partition_size, partition_range
from chainlake.ingest.mempool import MempoolRecorder

DEFAULT_DAGSTER_HOME = Path(".dagster_home")


def dagster_instance() -> dg.DagsterInstance:
    """The persistent instance in $DAGSTER_HOME (default `.dagster_home`, telemetry off)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DAGSTER_HOME.resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


def run_market(dn, blocks: int, txs_per_block: int, seed: int, lake_dir: Path, console: Console) -> None:
    """Mine `blocks` blocks of market activity, recording every txpool snapshot before each block."""
    recorder = MempoolRecorder(lake_dir)

    def observe(next_block: int, txpool: dict, seen_at: float) -> None:
        recorder.observe(txpool, next_block - 1, seen_at)

    started = time.monotonic()
    summary = dn.run(blocks=blocks, txs_per_block=txs_per_block, observers=(observe,))
    recorder.flush()
    console.print(f"market: {summary} in {time.monotonic() - started:.1f}s; "
                  f"{recorder.snapshots} txpool snapshots recorded")


def materialize_all(head: int, lake_dir: Path, catalog_path: Path, console: Console) -> list[str]:
    """Add the final partitions and materialize each (raw assets + checks), then mempool and catalog."""
    from dagster_project.definitions import defs
    from dagster_project.partitions import block_ranges
    from dagster_project.resources import LakeStore

    instance = dagster_instance()
    resources = {"lake": LakeStore(lake_dir=str(lake_dir), catalog_path=str(catalog_path))}
    keys = finalized_partition_keys(head, 0, lake_partition_size(lake_dir))
    instance.add_dynamic_partitions(block_ranges.name, keys)
    job = defs.get_job_def("raw_ingest_job")
    for key in keys:
        started = time.monotonic()
        result = job.execute_in_process(instance=instance, partition_key=key, resources=resources)
        failed = [c for c in result.get_asset_check_evaluations() if not c.passed]
        console.print(f"partition {key}: {'ok' if result.success else 'FAILED'}, "
                      f"{len(failed)} failed checks, {time.monotonic() - started:.1f}s")
    defs.get_job_def("mempool_job").execute_in_process(
        instance=instance, resources=resources,
        asset_selection=[dg.AssetKey("mempool"), dg.AssetKey("lake_catalog")],
    )
    return keys


def summary_table(keys: list[str], catalog_path: Path, lake_dir: Path) -> Table:
    first, last = partition_range(keys[0])[0], partition_range(keys[-1])[1]
    table = Table("dataset", "rows", "blocks", title=f"lake {lake_dir.resolve()} (blocks {first}-{last})")
    for name in ("blocks", "transactions", "logs", "traces", "balances", "mempool"):
        row = query(f"select count(*) as n, min(block_number) as lo, max(block_number) as hi from {name}"
                    if name != "mempool" else
                    "select count(*) as n, min(first_seen_head) as lo, max(first_seen_head) as hi from mempool",
                    catalog_path, lake_dir).to_pylist()[0]
        table.add_row(name, f"{row['n']:,}", f"{row['lo']}-{row['hi']}")
    return table


def run_demo(blocks: int, seed: int, txs_per_block: int, lake_dir: Path, catalog_path: Path) -> None:
    console = Console()
    with Devnet(seed=seed) as dn:
        dn.layout.to_json(DEFAULT_LAYOUT)
        console.print(f"devnet: anvil at {dn.url}, layout in {DEFAULT_LAYOUT}")
        run_market(dn, blocks, txs_per_block, seed, lake_dir, console)
        head = dn.block_number()
        keys = materialize_all(head, lake_dir, catalog_path, console)
    console.print(summary_table(keys, catalog_path, lake_dir))
    console.print(f"catalog: {catalog_path.resolve()}  (try: .venv/bin/chainlake sql \"select * from logs limit 5\")")
    console.print("UI: make dev, then open http://127.0.0.1:3000")
