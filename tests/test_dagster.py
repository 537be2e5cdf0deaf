"""Dagster wiring on the session devnet: partitions, checks, the sensor, the catalog asset."""

import dagster as dg
import pytest

from chainlake.catalog import query
from chainlake.ingest import read_range
from dagster_project.assets.decoded import DECODED_TABLES
from dagster_project.assets.raw import RAW_DATASETS
from dagster_project.definitions import defs
from dagster_project.partitions import block_ranges
from dagster_project.resources import ChainNode, LakeStore
from dagster_project.sensors import block_partitions_sensor


def assets_named(*names: str) -> list[dg.AssetsDefinition]:
    """The assets definitions producing any of `names` (the policies come as one multi-asset)."""
    return [a for a in defs.assets if {k.path[0] for k in a.keys} & set(names)]

PARTITION = 100


@pytest.fixture(scope="module")
def dagster_run(devnet, tmp_path_factory):
    """Materialize the first two 100-block partitions through the real block_range_job."""
    root = tmp_path_factory.mktemp("dagster")
    instance = dg.DagsterInstance.ephemeral()
    resources = {
        "chain": ChainNode(rpc_url=devnet.url),
        "lake": LakeStore(lake_dir=str(root / "lake"), catalog_path=str(root / "c.duckdb"),
                          partition_size=PARTITION, addresses=list(devnet.layout.agents.values())[:4],
                          tokens=[t.address for t in devnet.layout.tokens.values()]),
    }
    keys = ["000000000000-000000000099", "000000000100-000000000199"]
    instance.add_dynamic_partitions(block_ranges.name, keys)
    results = [
        dg.materialize(assets_named(*RAW_DATASETS), partition_key=key,
                       instance=instance, resources=resources)
        for key in keys
    ]
    return instance, resources, results, root


def test_every_raw_asset_materializes_with_passing_checks(dagster_run):
    _, _, results, _ = dagster_run
    for result in results:
        assert result.success
        checks = result.get_asset_check_evaluations()
        names = {(c.asset_key.path[0], c.check_name) for c in checks}
        assert ("blocks", "no_block_gaps") in names
        assert ("transactions", "tx_count_matches_blocks") in names
        assert ("logs", "logs_match_receipts") in names
        assert all(("%s" % name, "unique_keys") in names for name in RAW_DATASETS)
        assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]


def test_materialization_metadata_counts_rows(dagster_run):
    _, resources, results, _ = dagster_run
    lake = resources["lake"].lake
    for result, (first, last) in zip(results, [(0, 99), (100, 199)]):
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            name = mat.asset_key.path[0]
            assert mat.metadata["block_range"].value == f"{first}-{last}"
            assert mat.metadata["rows"].value == read_range(lake, name, first, last).height
            assert "|" in mat.metadata["preview"].value


def test_decoded_assets_materialize_after_raw_with_passing_checks(dagster_run):
    """The decoded assets on the partitions the raw assets filled: rows, metadata and checks."""
    instance, resources, _, _ = dagster_run
    lake = resources["lake"].lake
    decoded = assets_named(*DECODED_TABLES)
    for key, (first, last) in [("000000000000-000000000099", (0, 99)), ("000000000100-000000000199", (100, 199))]:
        result = dg.materialize(decoded, partition_key=key, instance=instance, resources=resources)
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {(c.asset_key.path[0], c.check_name) for c in checks} >= {
            (name, "unique_keys") for name in DECODED_TABLES} | {("dex_swaps", "rows_match_logs")}
        assert all(c.passed for c in checks), [c.check_name for c in checks if not c.passed]
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            assert mat.metadata["rows"].value == read_range(lake, mat.asset_key.path[0], first, last).height
    assert read_range(lake, "dex_swaps", 100, 199).height > 0


def test_sensor_adds_final_partitions_only(dagster_run, devnet):
    """A range becomes a partition once its last block is `confirmations` deep, and only once."""
    _, resources, _, _ = dagster_run
    head = devnet.last_block
    assert 200 <= head < 230  # the session devnet: 200 market blocks after a few deployment blocks
    instance = dg.DagsterInstance.ephemeral()

    def evaluate(confirmations):
        chain = ChainNode(rpc_url=devnet.url, confirmations=confirmations)
        context = dg.build_sensor_context(instance=instance, resources={"chain": chain, "lake": resources["lake"]})
        return block_partitions_sensor(context)

    first = evaluate(confirmations=head - 150)  # final up to block 150: only 0-99 is complete
    assert [r.partition_key for r in first.run_requests] == ["000000000000-000000000099"]
    assert list(first.dynamic_partitions_requests[0].partition_keys) == ["000000000000-000000000099"]
    instance.add_dynamic_partitions(block_ranges.name, ["000000000000-000000000099"])
    second = evaluate(confirmations=head - 199)  # block 199 is now final: 100-199 is new, 0-99 is known
    assert [r.partition_key for r in second.run_requests] == ["000000000100-000000000199"]
    instance.add_dynamic_partitions(block_ranges.name, ["000000000100-000000000199"])
    assert isinstance(evaluate(confirmations=0), dg.SkipReason)  # 200-299 is not complete yet


def test_catalog_asset_exposes_views(dagster_run):
    instance, resources, _, root = dagster_run
    catalog_asset = assets_named("lake_catalog")
    result = dg.materialize(catalog_asset, instance=instance, resources=resources)
    assert result.success
    n = query("select count(*) as n from blocks", root / "c.duckdb", root / "lake").to_pylist()[0]["n"]
    assert n == 200


def test_definitions_load():
    names = {k.path[0] for a in defs.assets for k in a.keys}
    assert set(RAW_DATASETS) | set(DECODED_TABLES) | {"mempool", "mempool_observations", "lake_catalog"} <= names
    job_assets = {k.path[0] for k in defs.resolve_job_def("block_range_job").asset_layer.selected_asset_keys}
    assert set(RAW_DATASETS) | set(DECODED_TABLES) == job_assets
    assert defs.resolve_sensor_def("block_partitions_sensor")
    assert defs.resolve_schedule_def("mempool_schedule")
    assert defs.resolve_schedule_def("retrain_schedule") and defs.resolve_sensor_def("new_blocks_retrain_sensor")
    assert {f"policy_{n}" for n in ("supervised", "linear", "tabular", "q_learning", "sarsa")} | {
        "backtest_report", "training_frame"} <= names
    assert defs.resolve_job_def("block_range_job").partitions_def == block_ranges
    mempool_assets = {k.path[0] for k in defs.resolve_job_def("mempool_job").asset_layer.selected_asset_keys}
    assert {"mempool", "mempool_swaps", "lake_catalog"} <= mempool_assets
