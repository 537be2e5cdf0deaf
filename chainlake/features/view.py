"""A feature view: one file (`sql/<name>.sql` or `features/<name>.py`) that computes features per entity per block.

Both kinds carry the same metadata, which the registry, the Dagster assets and the training frames rely on:

- ``entity``: the entity key column (e.g. ``pool``) the view's rows are keyed by;
- ``event_time``: the block-number column saying *when* a row's values were known: a row at block ``b`` may
  be computed from data of blocks ``<= b`` only (the engine checks this, see `chainlake.features.engine`);
- ``description`` and ``owner``;
- ``ttl_blocks`` (optional): a training frame shows a value for at most this many blocks after its event
  block, then null (Feast's feature-view TTL, in blocks);
- ``history_blocks`` (optional, required by the online engine): how far back a row looks. A row at block
  ``b`` depends only on input rows of blocks ``b - N + 1 .. b`` (``N = history_blocks``), where "input rows"
  follow the window rule of each table (`chainlake.features.inputs.window`: state tables keep the latest
  row per entity before the window, the token ledger its balances, the mempool the transactions still
  pending). Views read by the view count as inputs: the registry adds their history to it
  (`Registry.history`). `chainlake.features.engine.history_check` proves a declaration on data;
- ``reads``: the tables the view reads, for lineage. SQL views get it from the query's table references,
  polars views from their parameter names.

A SQL view starts with a header of ``-- key: value`` comment lines::

    -- entity: pool
    -- event_time: block_number
    -- description: mid price per pool per block, forward-filled, and log returns over 1/8/64 blocks
    -- owner: research
    -- ttl_blocks: 64
    -- history_blocks: 65
    SELECT ...

A polars view is a function decorated with `feature_view`; each parameter is named after a table it reads
and receives that table as a `pl.LazyFrame`; it returns a LazyFrame or DataFrame.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb

from chainlake.errors import ConfigError

HEADER_FIELDS = ("entity", "event_time", "description", "owner", "ttl_blocks", "history_blocks")
REQUIRED_FIELDS = ("entity", "event_time", "description", "owner")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER_LINE = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class FeatureView:
    """What the registry knows about one feature view (see the module docstring)."""

    name: str
    entity: str
    event_time: str
    description: str
    owner: str
    ttl_blocks: int | None = None
    history_blocks: int | None = None
    reads: tuple[str, ...] = ()
    source: Path = Path("<code>")  # a view made in code (tests, benchmarks) has no file
    kind: Literal["sql", "polars"] = "polars"
    sql: str | None = None
    fn: Callable | None = field(default=None, compare=False)

    @property
    def table(self) -> str:
        """The lake folder, catalog view and Dagster asset name of the materialized state table."""
        return f"feature_{self.name}"

    @property
    def keys(self) -> tuple[str, str]:
        return self.entity, self.event_time

    def where(self) -> str:
        """How error messages name the view: its file."""
        return f"{self.kind} view {self.name!r} ({self.source})"


def feature_view(*, entity: str, description: str, owner: str, event_time: str = "block_number",
                 ttl_blocks: int | None = None, history_blocks: int | None = None
                 ) -> Callable[[Callable], Callable]:
    """Mark a polars function as a feature view; the registry picks it up from `features/<name>.py`.

    The function keeps working as a plain function; the metadata rides on it as `__feature_view__`.
    """
    def mark(fn: Callable) -> Callable:
        fn.__feature_view__ = {"entity": entity, "event_time": event_time, "description": description,
                               "owner": owner, "ttl_blocks": ttl_blocks, "history_blocks": history_blocks}
        return fn
    return mark


def parse_sql_view(path: Path) -> FeatureView:
    """Read `sql/<name>.sql`: its `-- key: value` header and the SELECT below it."""
    text = path.read_text()
    meta: dict[str, str] = {}
    body: list[str] = []
    in_header = True
    for line in text.splitlines():
        match = _HEADER_LINE.match(line.strip()) if in_header else None
        if match and match.group(1) in HEADER_FIELDS:
            meta[match.group(1)] = match.group(2)
            continue
        if in_header and (not line.strip() or line.strip().startswith("--")):
            continue  # blank lines and free comments inside the header
        in_header = False
        body.append(line)
    sql = "\n".join(body).strip().rstrip(";").strip()
    where = f"sql view {path.stem!r} ({path})"
    if not sql:
        raise ConfigError(f"{where}: no SELECT after the header")
    return _make_view(path, "sql", meta, referenced_tables(sql, where), sql=sql)


def referenced_tables(sql: str, where: str) -> tuple[str, ...]:
    """The tables a query reads, from DuckDB's parse tree (CTE names left out).

    The parser alone, not `duckdb.get_table_names`: that one also binds, and binding an ASOF JOIN
    without the tables present fails.
    """
    con = duckdb.connect()
    try:
        tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0])
    finally:
        con.close()
    if tree.get("error"):
        raise ConfigError(f"{where}: Parser Error: {tree.get('error_message', 'cannot parse the query')}")
    tables: set[str] = set()
    ctes: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE":
                tables.add(node["table_name"])
            for entry in node.get("cte_map", {}).get("map", []) if isinstance(node.get("cte_map"), dict) else []:
                ctes.add(entry["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree["statements"])
    if len(tree["statements"]) != 1:
        raise ConfigError(f"{where}: a view is one SELECT statement, found {len(tree['statements'])}")
    return tuple(sorted(tables - ctes))


def polars_view(path: Path, fn: Callable) -> FeatureView:
    """The FeatureView of a decorated function found in `features/<name>.py`."""
    meta = dict(fn.__feature_view__)
    params = inspect.signature(fn).parameters.values()
    bad = [p.name for p in params if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if bad:
        raise ConfigError(f"polars view {path.stem!r} ({path}): parameters must be named tables, not {bad}")
    reads = tuple(p.name for p in params)
    return _make_view(path, "polars", {k: v for k, v in meta.items() if v is not None}, reads, fn=fn)


def _make_view(path: Path, kind: str, meta: dict, reads: tuple[str, ...], **code) -> FeatureView:
    name = path.stem
    where = f"{kind} view {name!r} ({path})"
    if not NAME.match(name):
        raise ConfigError(f"{where}: a view name is lowercase letters, digits and _ (it names a table)")
    missing = [f for f in REQUIRED_FIELDS if not str(meta.get(f, "")).strip()]
    if missing:
        raise ConfigError(f"{where}: the header lacks {', '.join(missing)}")
    ttl = _blocks(meta, "ttl_blocks", where)
    history = _blocks(meta, "history_blocks", where)
    if meta["entity"] == meta["event_time"]:
        raise ConfigError(f"{where}: entity and event_time must be different columns")
    return FeatureView(name=name, entity=str(meta["entity"]), event_time=str(meta["event_time"]),
                       description=str(meta["description"]), owner=str(meta["owner"]), ttl_blocks=ttl,
                       history_blocks=history, reads=reads, source=path, kind=kind, **code)


def _blocks(meta: dict, key: str, where: str) -> int | None:
    """An optional positive whole number of blocks from the header (ttl_blocks, history_blocks)."""
    value = meta.get(key)
    if value is None:
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be a whole number of blocks, not {value!r}") from None
    if value < 1:
        raise ConfigError(f"{where}: {key} must be at least 1")
    return value
