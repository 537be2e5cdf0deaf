"""The shipped feature views on a real chain: prefix invariance, the CLI, and the Dagster assets.

Prefix invariance is the end-to-end no-look-ahead proof: two lakes are filled from the session devnet,
one with blocks [0, N] (and only the txpool sightings made by then), one with [0, N + K]. Every view is
built on both; the rows of blocks <= N must be identical, and so must a training frame up to N + 1.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
from lakes import fill_lake
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from chainlake.cli import app
from chainlake.features import load_registry, state_path, training_frame
from chainlake.features.frames import pool_block_entities

TAIL = 70  # K: blocks only the longer lake has


@pytest.fixture(scope="module")
def lakes(devnet, feature_lake, tmp_path_factory):
    cut = devnet.last_block - TAIL
    short = tmp_path_factory.mktemp("features") / "short"
    fill_lake(devnet, short, cut)
    full, reports = feature_lake
    return devnet, short, full, cut, reports


def test_every_view_is_built_up_to_the_head(lakes):
    devnet, _, full, _, reports = lakes
    registry = load_registry()
    assert {r.view.name for r in reports} == set(registry.views) and len(registry.views) >= 10
    pools = {p.address.lower() for p in devnet.layout.pools.values()}
    for report in reports:
        assert report.rows > 0 and report.last_block == devnet.last_block, report.summary()
        state = pl.read_parquet(state_path(full, report.view))
        assert set(state.get_column(report.view.entity).unique()) <= pools


def test_prefix_invariance(lakes):
    """Adding blocks N+1..N+K changes no feature row of a block <= N, in any view."""
    _, short, full, cut, _ = lakes
    for view in load_registry().views.values():
        before = pl.read_parquet(state_path(short, view)).drop("valid_to").sort(view.entity, view.event_time)
        after = (pl.read_parquet(state_path(full, view)).filter(pl.col(view.event_time) <= cut).drop("valid_to")
                 .sort(view.entity, view.event_time))
        assert before.height > 0 and before.get_column(view.event_time).max() == cut
        assert_frame_equal(before, after, check_exact=True), view.name


def test_training_frames_agree_up_to_the_cut(lakes):
    """A frame asking for blocks <= N + 1 sees only blocks <= N, so both lakes answer it identically."""
    _, short, full, cut, _ = lakes
    names = list(load_registry().views)
    entities = pool_block_entities(full, last_block=cut + 1)
    frames = [training_frame(entities, names, lake_dir=lake, full_feature_names=True) for lake in (short, full)]
    assert_frame_equal(frames[0], frames[1], check_exact=True)
    # something is known: the first rows of each pool are null (nothing strictly before), later ones not
    assert frames[1].filter(pl.col("block_number") == cut + 1).get_column("mid_price__mid_price").null_count() == 0


def test_cli_features(lakes, tmp_path):
    _, _, full, _, _ = lakes
    runner = CliRunner()
    catalog = tmp_path / "c.duckdb"

    def run(*args):
        reads_only = args[:2] in (("features", "list"), ("features", "show"))  # these take no --catalog
        return runner.invoke(app, [*args, "--lake", str(full), *([] if reads_only else ["--catalog", str(catalog)])])

    listed = run("features", "list")
    assert listed.exit_code == 0 and "realized_vol_64" in listed.output and "mid_price" in listed.output
    shown = run("features", "show", "realized_vol_64")
    assert shown.exit_code == 0, shown.output
    assert "entity:      pool" in shown.output and "feature_mid_price" in shown.output and "built:" in shown.output
    built = run("features", "build", "realized_vol_64", "--check")
    assert built.exit_code == 0, built.output
    assert "feature_mid_price:" in built.output and "ok    realized_vol_64" in built.output  # upstream rebuilt too
    out = run("sql", "select count(*) as n from feature_realized_vol_64", "--format", "json")
    assert out.exit_code == 0 and '"n": ' in out.output
    frame = run("features", "frame", "--features", "mid_price:mid_price,realized_vol_64", "--stride", "10")
    assert frame.exit_code == 0, frame.output
    assert pl.read_parquet(full / "training_frame" / "data.parquet").columns[:3] == [
        "pool", "block_number", "mid_price__mid_price"]
    bad = run("features", "show", "no_such_view")
    assert bad.exit_code == 2 and "unknown feature view 'no_such_view'" in bad.output


def test_dagster_feature_assets(lakes, tmp_path):
    """Every view is an asset with lineage to what it reads; the features job passes its checks."""
    from dagster_project.definitions import defs

    _, _, full, _, _ = lakes
    graph = defs.resolve_asset_graph()
    vol = graph.get(dg.AssetKey("feature_realized_vol_64"))
    assert dg.AssetKey("feature_mid_price") in vol.parent_keys
    assert dg.AssetKey("pool_reserves") in graph.get(dg.AssetKey("feature_mid_price")).parent_keys
    assert dg.AssetKey("training_frame") in graph.get(dg.AssetKey("lake_catalog")).parent_keys
    result = defs.resolve_job_def("features_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        run_config={"resources": {"lake": {"config": {"lake_dir": str(full),
                                                      "catalog_path": str(tmp_path / "c.duckdb")}}}},
    )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"causal", "up_to_date"}
    assert len(checks) == 2 * len(load_registry().views)
    assert all(c.passed for c in checks), [(c.asset_key, c.check_name) for c in checks if not c.passed]
