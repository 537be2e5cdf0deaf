"""Online features without skew: the newest block's values, computed from a window of recent blocks with the
same view definitions, equal the offline state tables.

- on the session devnet: a lake filled up to a few blocks before the head, then `OnlineFeatures` follows the
  node block by block; every value equals the offline state row of the same block (built on the whole chain);
- on random markets (hypothesis): every shipped view's row at a random block is the same computed from its
  declared history only (`history_check`), and end to end from the windows `compute_latest` uses online;
  block after block, each view computed once per block on its own history (`LatestRows`, the online engine),
  a reorg (rows dropped and recomputed) and a gap included, equals the full computation;
- a control: a view declaring too short a history fails that check;
- a reorg (`anvil_reorg`, a devnet of its own) while following: the values after it equal those of a lake
  ingested from the final chain, and the window holds no orphaned row.

`mempool_pressure` is left out of the devnet comparison on purpose: online it reads the lake's mempool as of
the lake's last mempool build (see `chainlake.features.online`), while the offline table was built from every
later sighting; its window rule is covered by the random-market property.
"""

from __future__ import annotations

import dataclasses
import math
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lakes import fill_lake
from polars.testing import assert_frame_equal
from test_feature_views import SHIPPED, random_market, regime_market, shipped_registry

from chainlake.decode import decode
from chainlake.devnet import Devnet
from chainlake.errors import ConfigError
from chainlake.features import build_features, compute_view
from chainlake.features import online as online_module
from chainlake.features.engine import (
    LatestRows,
    compute_latest,
    history_check,
    state_path,
)
from chainlake.features.online import OnlineFeatures
from chainlake.features.registry import Registry
from chainlake.features.view import FeatureView, feature_view, polars_view
from chainlake.ingest import ingest
from chainlake.rpc import RpcClient

# the online engine reads small SQL results through execute() on purpose (see chainlake.features.engine)
pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

ONLINE_BLOCKS = 5  # blocks followed online after the lake's head
NOT_ONLINE = {"mempool_pressure": "reads the lake's mempool as of its last build, not the node"}


@pytest.fixture(scope="module")
def head_lake(devnet, tmp_path_factory):
    """The devnet in a lake up to ONLINE_BLOCKS blocks before its head."""
    lake = tmp_path_factory.mktemp("online") / "lake"
    fill_lake(devnet, lake, devnet.last_block - ONLINE_BLOCKS)
    return lake


def offline_rows(lake, view, block: int) -> pl.DataFrame:
    state = pl.read_parquet(state_path(lake, view)).filter(pl.col("block_number") == block)
    return state.drop("valid_from", "valid_to", "block_number").sort("pool")


def assert_same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Integers and labels exactly, floats to 1e-9 relative (rolling sums may add in another order)."""
    assert_frame_equal(got, want, check_exact=False, rel_tol=1e-9, abs_tol=1e-12, check_dtypes=True)


def assert_frame_is_offline(frame: pl.DataFrame, lake, names, block: int, pool: str | None = None) -> None:
    """Every view's columns of an online frame equal the offline state rows of `block` in `lake` (of `pool`)."""
    registry = shipped_registry()
    for name in names:
        columns = [c for c in frame.columns if c.startswith(f"{name}__")]
        got = frame.select("pool", *[pl.col(c).alias(c.removeprefix(f"{name}__")) for c in columns])
        want = offline_rows(lake, registry.get(name), block)
        want = want if pool is None else want.filter(pl.col("pool") == pool)
        assert set(got["pool"]) == set(want["pool"]), name
        assert_same(got.filter(pl.col("pool").is_in(want["pool"].implode())), want.select(got.columns))


def read_lake(lake, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((lake / name).rglob("*.parquet")))


def test_online_values_equal_the_offline_state_tables(devnet, feature_lake, head_lake, monkeypatch):
    """Block by block; `refresh` between blocks cuts the window and the cached rows back (every 2 blocks here),
    which changes nothing served."""
    full_lake, _ = feature_lake
    names = sorted(SHIPPED - set(NOT_ONLINE))
    monkeypatch.setattr(online_module, "SLACK", 2)
    monkeypatch.setattr(LatestRows, "SLACK", 2)
    with OnlineFeatures(head_lake, devnet.url, names) as online:
        start = online.head
        assert start == devnet.last_block - ONLINE_BLOCKS
        for block in range(start + 1, devnet.last_block + 1):
            frame = online.on_block_frame(block)
            assert frame.height > 0 and online.timings["features"] > 0
            assert_frame_is_offline(frame, full_lake, names, block)
            online.refresh()  # between blocks (a decision service's idle time): changes nothing served
        assert online._cut_at > start and online.latest._cut_at > start  # both were cut back on the way


def test_online_one_pool_and_named_columns(devnet, feature_lake, head_lake):
    full_lake, _ = feature_lake
    pool = pl.read_parquet(state_path(full_lake, "mid_price"))["pool"].min()
    refs = ["mid_price:log_return_1", "realized_vol_64:realized_vol_64", "market_regime:regime_code"]
    with OnlineFeatures(head_lake, devnet.url, refs, pool=pool) as online:
        block = online.head + 1
        values = online.on_block(block)
    assert list(values) == ["mid_price__log_return_1", "realized_vol_64__realized_vol_64",
                            "market_regime__regime_code"]
    for ref, full_name in zip(refs, values):
        view, column = ref.split(":")
        want = offline_rows(full_lake, view, block).filter(pl.col("pool") == pool)[column].item()
        got = values[full_name]
        assert (got is None and want is None) or math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)


def test_online_one_pool_equals_the_offline_rows_of_that_pool(devnet, feature_lake, head_lake):
    """With pool=..., the window keeps only the pool's own event rows: every view's value of that pool is
    still the offline one, block by block."""
    full_lake, _ = feature_lake
    names = sorted(SHIPPED - set(NOT_ONLINE))
    pools = pl.read_parquet(state_path(full_lake, "mid_price"))["pool"].unique().sort()
    pool = pools[len(pools) // 2]
    with OnlineFeatures(head_lake, devnet.url, names, pool=pool) as online:
        for block in range(online.head + 1, devnet.last_block + 1):
            frame = online.on_block_frame(block)
            assert frame["pool"].to_list() == [pool]
            assert_frame_is_offline(frame, full_lake, names, block, pool)


def test_online_refuses_old_blocks_and_views_without_history(devnet, head_lake):
    with OnlineFeatures(head_lake, devnet.url, ["price_impact"]) as online:
        with pytest.raises(ConfigError, match="older than the online window"):
            online.on_block_frame(online.head - 1)
        with pytest.raises(ConfigError, match="no pool"):
            online.on_block(online.head)
    registry = shipped_registry()
    bare = dataclasses.replace(registry.get("price_impact"), history_blocks=None)
    others = [v for v in registry.views.values() if v.name != "price_impact"]
    with pytest.raises(ConfigError, match="declares no history_blocks"):
        OnlineFeatures(head_lake, devnet.url, ["price_impact"], registry=Registry.from_views([*others, bare]))


def test_online_values_after_a_reorg_equal_a_lake_of_the_final_chain(tmp_path):
    """Follow 3 blocks, replace the last 2 by empty ones (`anvil_reorg`), mine 2 more: the next block reveals
    the fork, the window drops the orphaned rows and refetches; every value then equals the offline one."""
    names = sorted(SHIPPED - set(NOT_ONLINE))
    with Devnet(seed=23, txs_per_block=3) as dn, RpcClient(dn.url) as client:
        dn.run(60)
        lake, fresh = tmp_path / "lake", tmp_path / "fresh"
        start = client.block_number()
        ingest(dn.url, f"0:{start + 1}", ["blocks", "transactions", "logs"], lake, partition_size=50)
        decode(lake, f"0:{start + 1}", rpc_url=dn.url)
        with OnlineFeatures(lake, dn.url, names) as online:
            for _ in range(3):
                dn.market.step()
                online.on_block_frame(client.block_number())
            before = online.hot["blocks"].filter(pl.col("block_number") > start)
            client.call("anvil_reorg", [2, []])  # the last 2 blocks replaced, their txs dropped
            for _ in range(2):
                client.call("evm_mine")
            head = client.block_number()
            frames = {block: online.on_block_frame(block) for block in (head - 1, head)}
            window = {name: online.hot[name].filter(pl.col("block_number") > start) for name in online.tables}
        ingest(dn.url, f"0:{head + 1}", ["blocks", "transactions", "logs"], fresh, partition_size=50)
        decode(fresh, f"0:{head + 1}", rpc_url=dn.url)
    build_features(fresh, names)
    orphaned = before.join(window["blocks"], on="block_hash", how="anti")
    assert orphaned.height == 2  # the reorg did replace blocks the window held
    for name, rows in window.items():  # no orphaned row left, nothing missing
        want = read_lake(fresh, name).filter(pl.col("block_number") > start)
        assert_frame_equal(rows.sort(rows.columns), want.select(rows.columns).sort(rows.columns), check_exact=True)
    for block, frame in frames.items():
        assert_frame_is_offline(frame, fresh, names, block)


def test_incremental_rows_name_a_view_failing_on_a_new_block():
    """`LatestRows` collects every polars view of a block in one query; when that fails, the views are computed
    again depth by depth, so the error names the view, and nothing of the failed block is cached."""
    tables, _, _ = random_market(random.Random(5))
    grid = compute_view(shipped_registry().get("price_impact"), tables)["block_number"].unique().sort()
    before, last = grid[-2], grid[-1]  # the market's last two blocks with rows

    @feature_view(entity="pool", owner="tests", history_blocks=1, description="breaks on the market's last block")
    def byte_block(pool_blocks: pl.LazyFrame) -> pl.LazyFrame:
        byte = (pl.col("block_number") + (256 - last)).cast(pl.UInt8, strict=True)  # 256 at the last block
        return pool_blocks.select("pool", "block_number", byte.alias("byte"))

    registry = Registry.from_views([*shipped_registry().views.values(),
                                    polars_view(Path("features/byte_block.py"), byte_block)])
    latest = LatestRows(registry, ["realized_vol_64", "byte_block"])
    rows = latest.at(tables, before)
    assert rows["byte_block"].height > 0
    with pytest.raises(ConfigError, match="byte_block"):
        latest.at(tables, last)
    assert latest.head == before
    assert_frame_equal(latest.at(tables, before)["realized_vol_64"], rows["realized_vol_64"])


def test_incremental_rows_through_sql_views_reading_polars_views():
    """A SQL view reading a polars view runs after the one query; views reading such a view (polars -> SQL ->
    polars, polars -> SQL -> SQL) are computed depth by depth. Block by block, both equal the full
    computation, also with a DuckDB connection and an executor as the online engine has them."""
    tables, _, _ = random_market(random.Random(5))
    shipped = shipped_registry()
    doubled = FeatureView(name="doubled_vol", entity="pool", event_time="block_number", description="d", owner="tests",
                          history_blocks=1, reads=("feature_realized_vol_64",), source=Path("sql/doubled_vol.sql"),
                          kind="sql", sql="SELECT pool, block_number, realized_vol_16 * 2 AS twice "
                                          "FROM feature_realized_vol_64")
    tripled = dataclasses.replace(doubled, name="tripled_vol", reads=("feature_doubled_vol",),
                                  source=Path("sql/tripled_vol.sql"),
                                  sql="SELECT pool, block_number, twice * 1.5 AS thrice FROM feature_doubled_vol")

    @feature_view(entity="pool", owner="tests", history_blocks=1, description="reads a SQL view")
    def vol_plus_one(feature_doubled_vol: pl.LazyFrame) -> pl.LazyFrame:
        return feature_doubled_vol.select("pool", "block_number", (pl.col("twice") + 1).alias("plus_one"))

    registry = Registry.from_views([*shipped.views.values(), doubled, tripled,
                                    polars_view(Path("features/vol_plus_one.py"), vol_plus_one)])
    for names in (["vol_plus_one", "tripled_vol", "mid_price"],  # depth by depth
                  ["doubled_vol", "market_regime"]):  # one query, then the SQL view reading it
        full = full_views(registry, dict(tables), names)
        grid = full["mid_price"]["block_number"].unique().sort()
        with duckdb.connect() as con, ThreadPoolExecutor(2) as executor:
            for latest in (LatestRows(registry, names), LatestRows(registry, names, con, executor)):
                for block in grid[-6:]:
                    for name, rows in latest.at(tables, block).items():
                        assert_same(rows, full[name].filter(pl.col("block_number") == block))


# --- the window rule on random markets ----------------------------------------------------------------------

def full_views(registry, tables, names=SHIPPED):
    """Every view of `names` (and the views they read) on all of `tables`, which gets their state as inputs."""
    out = {}
    for view in registry.resolve(sorted(names)):
        out[view.name] = compute_view(view, tables)
        tables[view.table] = out[view.name].lazy()
    return out


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_every_view_is_right_from_its_declared_history(seed):
    registry, rnd = shipped_registry(), random.Random(seed)
    tables, first, last = random_market(rnd)
    raw = dict(tables)
    full = full_views(registry, tables)
    block = rnd.randint(first, last)
    for view in registry.resolve(sorted(SHIPPED)):
        outcome = history_check(view, tables, block, full[view.name])
        assert outcome.passed, outcome.description
    latest = compute_latest(registry, sorted(SHIPPED), raw, block)  # the online path: views on windows only
    for name, rows in latest.items():
        assert_same(rows, full[name].filter(pl.col("block_number") == block))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_incremental_rows_equal_the_full_computation(seed):
    """`LatestRows` block by block (view-on-view reads from its cached rows), after a reorg and a gap."""
    registry, rnd = shipped_registry(), random.Random(seed)
    tables, first, last = random_market(rnd)
    raw = dict(tables)
    full = full_views(registry, tables)
    names = sorted(SHIPPED)
    latest = LatestRows(registry, names)
    start = rnd.randint(first, max(first, last - 8))
    blocks = list(range(start, min(last, start + 8) + 1))
    fork = blocks[len(blocks) // 2]

    def check(block):
        for name, rows in latest.at(raw, block).items():
            assert_same(rows, full[name].filter(pl.col("block_number") == block))

    latest.SLACK = 2  # the cache cut back (`maintain`) after every third block
    for block in blocks:
        check(block)
        if block % 3 == 0:
            latest.maintain()
    floor = latest._floor  # the oldest fork the kept rows can step from
    latest.drop_from(fork)  # a reorg: the same chain comes back here, so the rows must too
    assert latest.head == (fork - 1 if fork >= floor else None)  # else it starts again from the spans
    check(blocks[-1])
    if blocks[-1] + LatestRows.GAP + 1 <= last:  # a long gap starts again from the spans
        check(blocks[-1] + LatestRows.GAP + 1)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_market_regime_is_bounded_on_long_markets(seed):
    """Longer than every window of market_regime (EMAs, hysteresis), with trending and flat stretches."""
    rnd, registry = random.Random(seed), shipped_registry()
    x, prices = 0.0, []
    for i in range(2_200):
        x += rnd.gauss((-1) ** (i // rnd.choice([150, 400])) * 0.0008, 0.003)
        prices.append(x)
    tables = regime_market(prices)
    mid = compute_view(registry.get("mid_price"), tables)
    tables["feature_mid_price"] = mid.lazy()
    regime = compute_view(registry.get("market_regime"), tables)
    for block in (rnd.randint(1, 2_200), rnd.randint(1_700, 2_200), 2_200):
        outcome = history_check(registry.get("market_regime"), tables, block, regime)
        assert outcome.passed, outcome.description


def test_a_too_short_history_is_caught():
    """A control: realized_vol_64 declaring 32 blocks (it reads 64) fails the check on these markets."""
    registry = shipped_registry()
    short = dataclasses.replace(registry.get("realized_vol_64"), history_blocks=32)
    caught = 0
    for seed in range(8):
        rnd = random.Random(seed)
        tables, first, last = random_market(rnd)
        tables["feature_mid_price"] = compute_view(registry.get("mid_price"), tables).lazy()
        caught += not history_check(short, tables, last).passed
        assert history_check(registry.get("realized_vol_64"), tables, last).passed
    assert caught >= 4
