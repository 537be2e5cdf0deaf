"""The DuckDB catalog: one file, `warehouse/chainlake.duckdb`, holding one view per lake dataset.

The Parquet files stay the source of truth; the catalog only stores view definitions over them, so it
is cheap to rebuild after every ingest and `duckdb warehouse/chainlake.duckdb` sees new files at once.
Views use absolute paths so the catalog works from any working directory.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from chainlake.config import DEFAULT_CATALOG, DEFAULT_LAKE
from chainlake.errors import ConfigError



@dataclass(frozen=True)
class CatalogView:
    name: str
    files: int
    glob: str


def lake_datasets(lake_dir: Path) -> dict[str, list[Path]]:
    """Every dataset folder of the lake that holds at least one Parquet file (temp files excluded)."""
    found: dict[str, list[Path]] = {}
    if not lake_dir.is_dir():
        return found
    for child in sorted(lake_dir.iterdir()):
        if child.is_dir() and not child.name.startswith(("_", ".")):
            files = sorted(p for p in child.rglob("*.parquet") if not p.name.startswith("."))
            if files:
                found[child.name] = files
    return found


def view_sql(name: str, lake_dir: Path) -> str:
    glob = (lake_dir.resolve() / name / "**" / "*.parquet").as_posix()
    return (
        f'CREATE OR REPLACE VIEW "{name}" AS SELECT * FROM '
        f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )


def build_catalog(lake_dir: Path = DEFAULT_LAKE, catalog_path: Path = DEFAULT_CATALOG,
                  extra_views: dict[str, str] | None = None) -> list[CatalogView]:
    """(Re)write the catalog: a view per dataset in the lake, plus named SQL views (features, later).

    The new catalog is built in a temp file and renamed over the old one, so a reader never sees a
    half-written catalog and a failing view leaves the previous catalog in place.
    """
    catalog_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".duckdb", dir=catalog_path.parent)
    os.close(fd)
    os.unlink(tmp)  # duckdb wants to create the file itself
    views: list[CatalogView] = []
    try:
        con = duckdb.connect(tmp)
        try:
            for name, files in lake_datasets(lake_dir).items():
                con.execute(view_sql(name, lake_dir))
                views.append(CatalogView(name, len(files), (lake_dir / name).as_posix()))
            for name, sql in (extra_views or {}).items():
                try:
                    con.execute(f'CREATE OR REPLACE VIEW "{name}" AS {sql}')
                except duckdb.Error as exc:
                    raise ConfigError(f"view {name!r}: {str(exc).splitlines()[0]}") from None
                views.append(CatalogView(name, 0, "sql"))
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, catalog_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        Path(tmp + ".wal").unlink(missing_ok=True)
    return views


def query(sql: str, catalog_path: Path = DEFAULT_CATALOG, lake_dir: Path = DEFAULT_LAKE) -> pa.Table:
    """Run one SQL statement against the catalog and return an Arrow table.

    Opens the catalog read-only (several readers may share it); if it does not exist yet, it is built
    from the lake first. A DuckDB error becomes one ConfigError line naming the problem.
    """
    if not catalog_path.exists():
        build_catalog(lake_dir, catalog_path)
    try:
        con = duckdb.connect(str(catalog_path), read_only=True)
    except duckdb.Error as exc:
        raise ConfigError(f"cannot open catalog {catalog_path}: {str(exc).splitlines()[0]}") from None
    try:
        relation = con.sql(sql)  # None for statements without a result, e.g. SET
        return relation.to_arrow_table() if relation is not None else pa.table({})
    except duckdb.Error as exc:
        raise ConfigError(f"SQL error: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()

