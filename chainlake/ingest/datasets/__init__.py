"""Dataset registry: every module here that defines ``DATASET`` is a dataset, found automatically."""

from __future__ import annotations

import importlib
import pkgutil

from chainlake.ingest.dataset import Dataset


def discover() -> dict[str, Dataset]:
    """Import each module of this package and collect its `DATASET`, by name."""
    found: dict[str, Dataset] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        dataset = getattr(module, "DATASET", None)
        if isinstance(dataset, Dataset):
            found[dataset.name] = dataset
    return dict(sorted(found.items()))


DATASETS: dict[str, Dataset] = discover()
