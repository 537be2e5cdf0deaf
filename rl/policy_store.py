"""Versioned policy artifacts under `warehouse/models/`: what was trained, on which data, with which features.

Layout: ``MODELS/<name>/<version>/meta.json`` + ``arrays.npz``, and ``MODELS/<name>/LATEST`` naming the
newest version. A version is ``<UTC time>-<hash of meta and arrays>``, so retraining on the same data
with the same seed gives the same hash part. `meta.json` records the pool, the block range the policy
was trained on, the feature list, the splits, the execution and env settings, and the validation
metrics: everything needed to tell whether a policy may be evaluated on given blocks (never on its own
training range).

A version folder is written in a temp folder and renamed into place, so a reader sees all of it or
nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from chainlake.config import DEFAULT_WAREHOUSE
from chainlake.errors import ConfigError

DEFAULT_MODELS = DEFAULT_WAREHOUSE / "models"


@dataclass(frozen=True)
class StoredPolicy:
    name: str
    version: str
    path: Path
    meta: dict
    arrays: dict[str, np.ndarray]


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()[:12]


def save_policy(name: str, meta: dict, arrays: dict[str, np.ndarray], models_dir: str | Path = DEFAULT_MODELS,
                now: datetime | None = None) -> StoredPolicy:
    """Write a new version of policy `name` and point LATEST at it."""
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"policy name {name!r}: letters, digits and _ only")
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    version = f"{stamp}-{_digest(meta, arrays)}"
    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    meta = {**meta, "name": name, "version": version}
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        (tmp / "arrays.npz").write_bytes(buffer.getvalue())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = root / ".LATEST.tmp"
    latest.write_text(version + "\n")
    os.replace(latest, root / "LATEST")
    return StoredPolicy(name, version, final, meta, arrays)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_policy(name: str, version: str | None = None, models_dir: str | Path = DEFAULT_MODELS) -> StoredPolicy:
    """A stored version (default: LATEST) of policy `name`."""
    root = Path(models_dir) / name
    if version is None:
        pointer = root / "LATEST"
        if not pointer.exists():
            known = sorted(p.name for p in Path(models_dir).iterdir() if p.is_dir()) if Path(models_dir).is_dir() else []
            raise ConfigError(f"no trained policy {name!r} in {models_dir} (known: {', '.join(known) or 'none'}): "
                              "run `chainlake train` first")
        version = pointer.read_text().strip()
    path = root / version
    if not (path / "meta.json").exists():
        raise ConfigError(f"policy {name!r} has no version {version!r} in {models_dir}")
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "arrays.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return StoredPolicy(name, version, path, meta, arrays)


def list_policies(models_dir: str | Path = DEFAULT_MODELS) -> dict[str, list[str]]:
    """{name: [versions, oldest first]}."""
    root = Path(models_dir)
    if not root.is_dir():
        return {}
    return {p.name: sorted(v.name for v in p.iterdir() if v.is_dir() and not v.name.startswith("."))
            for p in sorted(root.iterdir()) if p.is_dir()}
