"""The feature registry: every `sql/<name>.sql` and `features/<name>.py` of the project, found automatically.

Adding a view is adding a file; nothing else is edited. Loading checks what can be checked without data
(headers, names, that every table a view reads exists or is another view, no cycles), and every error
names the file.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chainlake.errors import ConfigError
from chainlake.features.inputs import FEATURE_PREFIX, GRID, LAKE_SCHEMAS, is_input
from chainlake.features.view import FeatureView, parse_sql_view, polars_view

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQL_DIR = PROJECT_ROOT / "sql"
DEFAULT_POLARS_DIR = PROJECT_ROOT / "features"


@dataclass(frozen=True)
class Registry:
    views: dict[str, FeatureView]

    @classmethod
    def from_views(cls, views: Iterable[FeatureView]) -> Registry:
        """A registry of views built in code (tests, benchmarks); checked like discovered ones."""
        found: dict[str, FeatureView] = {}
        for view in views:
            if view.name in found:
                raise ConfigError(f"feature view {view.name!r} is defined twice: {found[view.name].source} "
                                  f"and {view.source}")
            found[view.name] = view
        registry = cls(dict(sorted(found.items())))
        registry.check()
        return registry

    def get(self, name: str) -> FeatureView:
        name = name.removeprefix(FEATURE_PREFIX)
        if name not in self.views:
            known = ", ".join(self.views) or "none"
            raise ConfigError(f"unknown feature view {name!r} (known: {known})")
        return self.views[name]

    def upstream(self, view: FeatureView) -> list[FeatureView]:
        """The views `view` reads directly."""
        return [self.views[r[len(FEATURE_PREFIX):]] for r in view.reads
                if r.startswith(FEATURE_PREFIX) and r[len(FEATURE_PREFIX):] in self.views]

    def resolve(self, names: Sequence[str] | None = None) -> list[FeatureView]:
        """The named views (all when None) plus every view they read, in dependency order."""
        wanted = [self.get(n) for n in names] if names else list(self.views.values())
        order: list[FeatureView] = []
        seen: set[str] = set()

        def visit(view: FeatureView, path: tuple[str, ...]) -> None:
            if view.name in path:
                raise ConfigError(f"{view.where()}: views read each other in a cycle: "
                                  f"{' -> '.join((*path[path.index(view.name):], view.name))}")
            if view.name in seen:
                return
            for up in self.upstream(view):
                visit(up, (*path, view.name))
            seen.add(view.name)
            order.append(view)

        for view in wanted:
            visit(view, ())
        return order

    def history(self, view: FeatureView | str) -> int:
        """Blocks of lake input a row of `view` depends on: its own `history_blocks`, plus the history of
        the views it reads less one (a row at b reads their rows b-N+1..b, each looking back its own)."""
        view = self.get(view) if isinstance(view, str) else view
        return self.declared_history(view) + max((self.history(u) for u in self.upstream(view)), default=1) - 1

    def declared_history(self, view: FeatureView) -> int:
        if view.history_blocks is None:
            raise ConfigError(f"{view.where()}: declares no history_blocks, so its newest row cannot be computed "
                              "from a window of recent blocks: add `history_blocks` to its header")
        return view.history_blocks

    def spans(self, names: Sequence[str]) -> dict[str, int]:
        """{view: blocks of input to compute it on} for the newest row of each named view, every view they
        read included, in dependency order. A view read by others must be right for every block its
        readers look back over, so its span grows by theirs."""
        order = self.resolve(names)
        rows = {self.get(n).name: 1 for n in names}  # newest rows needed per view
        for view in reversed(order):
            for up in self.upstream(view):
                rows[up.name] = max(rows.get(up.name, 1), rows[view.name] + self.declared_history(view) - 1)
        return {v.name: rows[v.name] + self.declared_history(v) - 1 for v in order}

    def check(self) -> None:
        for view in self.views.values():
            unknown = [r for r in view.reads if not is_input(r, self.views)]
            if unknown:
                raise ConfigError(f"{view.where()}: reads unknown table(s) {', '.join(map(repr, unknown))}; "
                                  f"a view reads lake tables ({', '.join(sorted(LAKE_SCHEMAS))}), {GRID!r}, "
                                  f"or other views as feature_<name>")
            for up in self.upstream(view):  # inputs are cut back on block_number (`inputs.clip`)
                if up.event_time != "block_number":
                    raise ConfigError(f"{view.where()} reads {up.table}, whose event_time is {up.event_time!r}: "
                                      "a view read by other views keys its rows by block_number")
        self.resolve()  # raises on cycles


def discover(roots: Sequence[Path] | None = None) -> list[FeatureView]:
    """Every view file under `roots` (default: the project's sql/ and features/ folders)."""
    views: list[FeatureView] = []
    for root in roots or (DEFAULT_SQL_DIR, DEFAULT_POLARS_DIR):
        root = Path(root)
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.sql")):
            views.append(parse_sql_view(path))
        for path in sorted(root.glob("*.py")):
            if not path.name.startswith("_"):
                views.append(load_polars_file(path))
    return views


def load_polars_file(path: Path) -> FeatureView:
    """Import `features/<name>.py` and return its one decorated function as a view."""
    module_name = f"chainlake_feature_views.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in user code becomes one line naming the file
        sys.modules.pop(module_name, None)
        raise ConfigError(f"polars view {path.stem!r} ({path}): cannot import: {type(exc).__name__}: {exc}") from None
    marked = [obj for obj in vars(module).values()
              if callable(obj) and hasattr(obj, "__feature_view__") and getattr(obj, "__module__", None) == module_name]
    if len(marked) != 1:
        raise ConfigError(f"polars view {path.stem!r} ({path}): expected one function decorated with "
                          f"@feature_view, found {len(marked)}")
    return polars_view(path, marked[0])


def load_registry(roots: Sequence[Path] | None = None) -> Registry:
    return Registry.from_views(discover(roots))
