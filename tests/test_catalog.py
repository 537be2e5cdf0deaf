"""The DuckDB catalog: a view per dataset folder, rebuilt atomically."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chainlake.catalog import build_catalog, query
from chainlake.errors import ConfigError


def write(lake, dataset, key, rows):
    path = lake / dataset / f"block_partition={key}" / "data.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table(rows), path)


def test_views_cover_every_partition_and_skip_temp_files(tmp_path):
    lake, catalog = tmp_path / "lake", tmp_path / "c.duckdb"
    write(lake, "blocks", "000000000000-000000000009", {"block_number": list(range(10))})
    write(lake, "blocks", "000000000010-000000000019", {"block_number": list(range(10, 20))})
    # a writer's temp file in flight (chainlake.ingest.lake.write_parquet_atomic names them .<name>.*.tmp)
    (lake / "blocks" / "block_partition=000000000010-000000000019" / ".data.parquet.x1.tmp").write_bytes(b"junk")
    (lake / "_lake.json").write_text("{}")
    views = build_catalog(lake, catalog)
    assert [(v.name, v.files) for v in views] == [("blocks", 2)]
    rows = query("select count(*) as n, max(block_number) as hi from blocks", catalog, lake).to_pylist()
    assert rows == [{"n": 20, "hi": 19}]
    # the hive partition column is visible for pruning
    assert "block_partition" in query("select * from blocks limit 1", catalog, lake).column_names
    assert list(tmp_path.glob(".catalog-*")) == []


def test_plain_duckdb_opens_the_catalog(tmp_path):
    lake, catalog = tmp_path / "lake", tmp_path / "c.duckdb"
    write(lake, "logs", "000000000000-000000000009", {"block_number": [1, 2]})
    build_catalog(lake, catalog)
    con = duckdb.connect(str(catalog), read_only=True)
    try:
        assert con.sql("select sum(block_number) from logs").fetchall() == [(3,)]
    finally:
        con.close()


def test_a_failing_view_keeps_the_old_catalog(tmp_path):
    lake, catalog = tmp_path / "lake", tmp_path / "c.duckdb"
    write(lake, "blocks", "000000000000-000000000009", {"block_number": [1]})
    build_catalog(lake, catalog)
    with pytest.raises(ConfigError, match="view 'bad': Catalog Error"):
        build_catalog(lake, catalog, extra_views={"bad": "select * from nowhere"})
    assert query("select count(*) as n from blocks", catalog, lake).to_pylist() == [{"n": 1}]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_sql_is_a_config_error(tmp_path):
    lake, catalog = tmp_path / "lake", tmp_path / "c.duckdb"
    write(lake, "blocks", "000000000000-000000000009", {"block_number": [1]})
    with pytest.raises(ConfigError, match="SQL error"):
        query("select nope from blocks", catalog, lake)


def test_a_file_that_is_no_catalog_is_a_config_error(tmp_path):
    catalog = tmp_path / "c.duckdb"
    catalog.write_text("not a database")
    with pytest.raises(ConfigError, match="cannot open catalog"):
        query("select 1", catalog, tmp_path / "lake")
