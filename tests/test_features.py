"""The feature store engine: view files and their errors, state tables, training frames (point-in-time).

No node needed: views and state tables are made in tmp folders. The shipped views are tested in
test_feature_views.py, and on a real chain in test_features_lake.py.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainlake.errors import ConfigError
from chainlake.features import (
    FeatureView,
    Registry,
    build_features,
    causality_check,
    compute_view,
    load_registry,
    to_state,
    training_frame,
    write_state,
)
from chainlake.features.frames import parse_refs

HEADER = "-- entity: pool\n-- event_time: block_number\n-- description: d\n-- owner: research\n"


def view(name: str = "v", ttl: int | None = None, entity: str = "pool") -> FeatureView:
    return FeatureView(name=name, entity=entity, event_time="block_number", description="d", owner="o",
                       ttl_blocks=ttl, reads=("blocks",), source=Path(f"features/{name}.py"), kind="polars")


def write_views(root: Path, files: dict[str, str]) -> list[Path]:
    (root / "sql").mkdir(parents=True, exist_ok=True)
    (root / "features").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return [root / "sql", root / "features"]


# --- view files and the registry -------------------------------------------------------------------------

def test_sql_header_and_lineage(tmp_path):
    roots = write_views(tmp_path, {"sql/spread.sql": HEADER + "-- ttl_blocks: 8\n-- free comment\n\n"
                                   "SELECT g.pool, g.block_number, r.mid_price AS x\n"
                                   "FROM pool_blocks g ASOF JOIN pool_reserves r\n"
                                   "  ON g.pool = r.pool AND g.block_number >= r.block_number;\n"})
    [v] = load_registry(roots).views.values()
    assert (v.name, v.entity, v.event_time, v.owner, v.ttl_blocks, v.kind) == (
        "spread", "pool", "block_number", "research", 8, "sql")
    assert v.reads == ("pool_blocks", "pool_reserves") and v.table == "feature_spread"
    assert v.sql.startswith("SELECT") and not v.sql.endswith(";")


def test_polars_view_reads_its_parameters(tmp_path):
    roots = write_views(tmp_path, {"features/flow.py": (
        "from chainlake.features import feature_view\n"
        "@feature_view(entity='pool', description='d', owner='me@example.com', ttl_blocks=4)\n"
        "def flow(dex_swaps, feature_other):\n    return dex_swaps\n"),
        "sql/other.sql": HEADER + "SELECT pool, block_number, 1.0 AS y FROM pool_blocks"})
    registry = load_registry(roots)
    assert registry.get("flow").reads == ("dex_swaps", "feature_other")
    assert [v.name for v in registry.resolve(["flow"])] == ["other", "flow"]  # upstream first
    assert registry.get("feature_flow").name == "flow"


@pytest.mark.parametrize("files, message", [
    ({"sql/a.sql": "-- entity: pool\n-- description: d\n-- owner: o\nSELECT 1"}, "sql/a.sql): the header lacks event_time"),
    ({"sql/a.sql": HEADER + "-- ttl_blocks: soon\nSELECT 1"}, "ttl_blocks must be a whole number"),
    ({"sql/a.sql": HEADER}, "sql/a.sql): no SELECT"),
    ({"sql/a.sql": HEADER + "SELEC pool FROM blocks"}, "sql/a.sql): Parser Error"),
    ({"sql/a.sql": HEADER + "SELECT * FROM swaps"}, "sql/a.sql): reads unknown table(s) 'swaps'"),
    ({"sql/Bad-Name.sql": HEADER + "SELECT 1 FROM blocks"}, "a view name is lowercase"),
    ({"sql/a.sql": HEADER + "SELECT * FROM blocks",
      "features/a.py": "from chainlake.features import feature_view\n"
                       "@feature_view(entity='pool', description='d', owner='o')\ndef a(blocks):\n    return blocks\n"},
     "defined twice"),
    ({"features/a.py": "import nonexistent_module_xyz\n"}, "features/a.py): cannot import: ModuleNotFoundError"),
    ({"features/a.py": "x = 1\n"}, "expected one function decorated with @feature_view, found 0"),
    ({"sql/a.sql": HEADER + "SELECT * FROM feature_b", "sql/b.sql": HEADER + "SELECT * FROM feature_a"},
     "cycle: a -> b -> a"),
])
def test_bad_view_files_name_the_file(tmp_path, files, message):
    with pytest.raises(ConfigError, match=None) as info:
        load_registry(write_views(tmp_path, files))
    assert message in str(info.value)


def test_unknown_feature_lists_the_known_ones():
    registry = Registry.from_views([view("a"), view("b")])
    with pytest.raises(ConfigError, match=r"unknown feature view 'c' \(known: a, b\)"):
        registry.get("c")
    with pytest.raises(ConfigError, match="unknown feature view 'c'"):
        parse_refs(["a", "c:x"], registry)


# --- computing views ----------------------------------------------------------------------------------------

def blocks_frame(n: int = 10) -> pl.LazyFrame:
    return pl.LazyFrame({"block_number": list(range(n)), "base_fee_per_gas": [float(i) for i in range(n)]})


def sql_view(tmp_path: Path, body: str, name: str = "a") -> FeatureView:
    roots = write_views(tmp_path, {f"sql/{name}.sql": HEADER + body})
    return load_registry(roots).get(name)


def test_sql_runtime_error_names_the_file(tmp_path):
    v = sql_view(tmp_path, "SELECT 'p' AS pool, block_number, no_such_column FROM blocks")
    with pytest.raises(ConfigError, match=r"sql view 'a' \(.*sql/a.sql\): Binder Error"):
        compute_view(v, {"blocks": blocks_frame()})


@pytest.mark.parametrize("body, message", [
    ("SELECT block_number, base_fee_per_gas FROM blocks", "no entity column 'pool'"),
    ("SELECT 'p' AS pool, base_fee_per_gas FROM blocks", "no event_time column 'block_number'"),
    ("SELECT 'p' AS pool, block_number::VARCHAR AS block_number, 1 AS x FROM blocks", "must be an integer block"),
    ("SELECT 'p' AS pool, block_number FROM blocks", "no feature column"),
    ("SELECT 'p' AS pool, block_number // 2 AS block_number, 1 AS x FROM blocks", "rows share an (pool, block_number)"),
    ("SELECT NULL::VARCHAR AS pool, block_number, 1 AS x FROM blocks", "null 'pool' or 'block_number'"),
    ("SELECT 'p' AS pool, block_number, 1 AS valid_from FROM blocks", "reserved for the state table"),
])
def test_view_contract(tmp_path, body, message):
    v = sql_view(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        compute_view(v, {"blocks": blocks_frame()})
    assert message in str(info.value) and "sql/a.sql" in str(info.value)


def test_causality_check_catches_look_ahead(tmp_path):
    causal = sql_view(tmp_path, "SELECT 'p' AS pool, block_number, avg(base_fee_per_gas) OVER "
                                "(ORDER BY block_number ROWS BETWEEN 3 PRECEDING AND CURRENT ROW) AS x FROM blocks",
                      "causal")
    leaky = sql_view(tmp_path, "SELECT 'p' AS pool, block_number, "
                               "lead(base_fee_per_gas) OVER (ORDER BY block_number) AS x FROM blocks", "leaky")
    normalised = sql_view(tmp_path, "SELECT 'p' AS pool, block_number, "
                                    "base_fee_per_gas / max(base_fee_per_gas) OVER () AS x FROM blocks", "normalised")
    tables = {"blocks": blocks_frame(20)}
    assert causality_check(causal, tables, 9).passed
    for bad in (leaky, normalised):
        outcome = causality_check(bad, tables, 9)
        assert not outcome.passed and "look-ahead" in outcome.description


def test_failed_build_writes_nothing(tmp_path):
    lake = tmp_path / "lake"
    (lake / "blocks").mkdir(parents=True)
    blocks_frame().collect().write_parquet(lake / "blocks" / "data.parquet")
    roots = write_views(tmp_path, {"sql/good.sql": HEADER + "SELECT 'p' AS pool, block_number, 1.0 AS x FROM blocks",
                                   "sql/zbad.sql": HEADER + "SELECT 'p' AS pool, block_number, nope FROM blocks"})
    registry = load_registry(roots)
    with pytest.raises(ConfigError, match="zbad"):
        build_features(lake, None, registry)
    assert not (lake / "feature_good").exists()
    [report] = build_features(lake, ["good"], registry)
    assert report.rows == 10 and (lake / "feature_good" / "data.parquet").exists()


# --- state tables and training frames ----------------------------------------------------------------------

def test_state_table_bounds():
    rows = pl.DataFrame({"pool": ["a", "a", "b"], "block_number": [1, 3, 2], "x": [1.0, 2.0, 3.0]})
    state = to_state(view(), rows.sort("pool", "block_number"))
    assert state.to_dicts() == [
        {"pool": "a", "block_number": 1, "valid_from": 2, "valid_to": 4, "x": 1.0},
        {"pool": "b", "block_number": 2, "valid_from": 3, "valid_to": None, "x": 3.0},
        {"pool": "a", "block_number": 3, "valid_from": 4, "valid_to": None, "x": 2.0},
    ]


def brute_force(state_rows: list[dict], entity_rows: list[dict], ttl: int | None) -> list[float | None]:
    """The definition, one row at a time: the latest value with event block < as-of block, within the TTL."""
    out = []
    for e in entity_rows:
        known = [r for r in state_rows if r["pool"] == e["pool"] and r["block_number"] < e["block_number"]]
        best = max(known, key=lambda r: r["block_number"], default=None)
        fresh = best is not None and (ttl is None or e["block_number"] - best["block_number"] <= ttl)
        out.append(best["x"] if fresh else None)
    return out


pools = st.sampled_from(["0xaa", "0xbb", "0xcc"])


@settings(max_examples=60, deadline=None)
@given(state=st.dictionaries(st.tuples(pools, st.integers(0, 60)), st.floats(-1e6, 1e6, allow_nan=False),
                             max_size=40),
       entities=st.lists(st.tuples(pools, st.integers(0, 70)), max_size=40),
       ttl=st.one_of(st.none(), st.integers(1, 20)))
def test_training_frame_is_point_in_time(tmp_path_factory, state, entities, ttl):
    """Each value is the latest one strictly before the as-of block (never at or after it), TTL applied."""
    lake = tmp_path_factory.mktemp("pit")
    v = view("x", ttl)
    state_rows = [{"pool": p, "block_number": b, "x": x} for (p, b), x in state.items()]
    write_state(lake, v, pl.DataFrame(state_rows, schema={"pool": pl.String, "block_number": pl.Int64,
                                                          "x": pl.Float64}))
    entity_rows = [{"pool": p, "block_number": b, "row": i} for i, (p, b) in enumerate(entities)]
    frame = training_frame(pl.DataFrame(entity_rows, schema={"pool": pl.String, "block_number": pl.Int64,
                                                             "row": pl.Int64}),
                           ["x"], lake_dir=lake, registry=Registry.from_views([v]))
    assert frame.get_column("block_number").is_sorted()
    got = dict(zip(frame.get_column("row").to_list(), frame.get_column("x").to_list()))
    assert [got[i] for i in range(len(entity_rows))] == brute_force(state_rows, entity_rows, ttl)


def test_training_frame_names_columns_and_errors(tmp_path):
    a, b = view("a"), view("b", entity="token")
    for v, key in ((a, "pool"), (b, "token")):
        write_state(tmp_path, v, pl.DataFrame({key: ["k"], "block_number": [1], "x": [1.0], "y": [2.0]}))
    registry = Registry.from_views([a, b])
    entities = pl.DataFrame({"pool": ["k", "k"], "token": ["k", "k"], "block_number": [5, 1]})
    frame = training_frame(entities, ["a:y", "b"], lake_dir=tmp_path, registry=registry, full_feature_names=True)
    assert frame.columns == ["pool", "token", "block_number", "a__y", "b__x", "b__y"]
    assert frame.get_column("a__y").to_list() == [None, 2.0]  # sorted by block: 1 (nothing known yet), 5
    with pytest.raises(ConfigError, match="comes from two places"):
        training_frame(entities, ["a", "b"], lake_dir=tmp_path, registry=registry)
    with pytest.raises(ConfigError, match=r"features/b.py\) is keyed by 'token', but the entity frame has no"):
        training_frame(entities.drop("token"), ["b"], lake_dir=tmp_path, registry=registry)
    with pytest.raises(ConfigError, match="no as-of column 'block_number'"):
        training_frame(entities.drop("block_number"), ["a"], lake_dir=tmp_path, registry=registry)
    with pytest.raises(ConfigError, match=r"has no feature 'z' \(it has: x, y\)"):
        training_frame(entities, ["a:z"], lake_dir=tmp_path, registry=registry)
    with pytest.raises(ConfigError, match="not built .* run `chainlake features build c`"):
        training_frame(entities, ["c"], lake_dir=tmp_path, registry=Registry.from_views([view("c")]))


def test_clip_undoes_what_the_mempool_learned_later():
    """Cut at block 10, a tx first seen at 10 and replaced at 20 is pending, unreplaced, its later sightings unknown."""
    from chainlake.features.inputs import clip

    mempool = pl.LazyFrame({
        "transaction_hash": ["0xaa", "0xbb", "0xcc"], "first_seen_head": [10, 20, 3], "last_seen_head": [19, 25, 4],
        "last_seen_ms": [240_000, 300_000, 50_000], "sightings": [11, 5, 2], "included_block": [None, 26, None],
        "included_index": [None, 0, None], "delay_blocks": [None, 6, None], "delay_seconds": [None, 72.0, None],
        "replaced_by": ["0xbb", None, None], "status": ["replaced", "included", "dropped"]})
    cut = clip("mempool", mempool, 10).collect().to_dicts()
    assert [r["transaction_hash"] for r in cut] == ["0xaa", "0xcc"]  # 0xbb was first seen later
    aa, cc = cut
    assert (aa["status"], aa["replaced_by"], aa["last_seen_head"], aa["sightings"], aa["last_seen_ms"]) == (
        "pending", None, 10, None, None)
    assert (cc["status"], cc["sightings"], cc["last_seen_head"]) == ("dropped", 2, 4)  # gone before the cut: known
    later = clip("mempool", mempool, 30).collect().to_dicts()
    assert later[1]["status"] == "included" and later[0]["replaced_by"] == "0xbb"


def test_a_view_read_by_views_keys_rows_by_block_number(tmp_path):
    other = HEADER.replace("event_time: block_number", "event_time: height")
    roots = write_views(tmp_path, {"sql/base.sql": other + "SELECT 'p' AS pool, block_number AS height, 1 AS x FROM blocks",
                                   "sql/top.sql": HEADER + "SELECT * FROM feature_base"})
    with pytest.raises(ConfigError, match="reads feature_base, whose event_time is 'height'"):
        load_registry(roots)
