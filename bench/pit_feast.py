"""Feast's side of bench/pit.py: `get_historical_features` on the file (dask) offline store.

    bench/.feast-venv/bin/python bench/pit_feast.py --work bench/.work-pit [--repeats 1]

Runs in its own venv (feast pulls pandas, dask, numpy; chainlake's venv has none of them) and is started by
bench/pit.py, which made the data. It reads work/meta.json and:
- registers one Entity `pool` (string join key) and one FeatureView per view, each on a FileSource
  (work/feast/<view>.parquet: pool, event_timestamp = genesis + 12 s x valid_from, features), in a local
  file registry under work/feast-repo (an sqlite online store is configured, never used);
- builds the entity DataFrame (pandas) from work/entities_slice.parquet: pool, event_timestamp = genesis +
  12 s x as-of block, and block_number kept as an extra column (Feast passes it through; the checksum
  needs it);
- times `store.get_historical_features(entity_df, features).to_df()`, best of --repeats;
- writes what Feast returned (pool, block_number, features) to work/feast_out.parquet (not timed), which
  bench/pit.py compares value by value with its own reference join.

Semantics: Feast keeps a feature row when `entity ts - ttl <= feature ts <= entity ts`. With feature ts =
time(valid_from) = time(block + 1), `<=` means "event block strictly before the as-of block", as chainlake.
chainlake nulls a value when as_of - event block > ttl_blocks, i.e. keeps as_of - valid_from <= ttl - 1;
so Feast's ttl is (ttl_blocks - 1) x 12 s. A view without ttl gets ttl 0 (Feast: no limit).
Prints one JSON line, like bench/pit.py's children.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from datetime import timedelta
from pathlib import Path

GENESIS_UNIX = 1_438_269_973
SECONDS_PER_BLOCK = 12


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_store(work: Path, views: list[dict]):
    """A FeatureStore configured in code (no feature_store.yaml), with the views applied to its registry."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.types import Float64

    repo = work / "feast-repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "registry.db").unlink(missing_ok=True)
    config = RepoConfig(
        project="pit_bench", provider="local", registry=str(repo / "registry.db"), repo_path=str(repo),
        offline_store=DaskOfflineStoreConfig(type="file"),
        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
        entity_key_serialization_version=3,
    )
    store = FeatureStore(config=config)
    pool = Entity(name="pool", join_keys=["pool"], value_type=ValueType.STRING)
    objects = [pool]
    for view in views:
        ttl = view["ttl_blocks"]
        objects.append(FeatureView(
            name=view["name"], entities=[pool],
            ttl=timedelta(seconds=0 if ttl is None else (ttl - 1) * SECONDS_PER_BLOCK),
            schema=[Field(name=f, dtype=Float64) for f in view["features"]],
            source=FileSource(name=f"{view['name']}_source", path=str(work / "feast" / f"{view['name']}.parquet"),
                              timestamp_field="event_timestamp"),
            online=False,
        ))
    store.apply(objects)
    return store


def entity_frame(work: Path):
    """The slice as Feast wants it: pandas, a tz-aware UTC event_timestamp per row."""
    import pandas as pd
    import pyarrow.parquet as pq

    frame = pq.read_table(work / "entities_slice.parquet").to_pandas()
    frame["event_timestamp"] = pd.to_datetime(
        GENESIS_UNIX + frame["block_number"] * SECONDS_PER_BLOCK, unit="s", utc=True)
    return frame


def checksums(frame, views: list[dict]) -> dict:
    """Same integers as bench/pit.py's checksums (count non-null, sum floor(1000 x), weighted sum)."""
    import numpy as np

    out = {}
    for view in views:
        values = frame[view["features"][0]].to_numpy(dtype="float64", na_value=np.nan)
        keep = ~np.isnan(values)
        milli = np.floor(values[keep] * 1000).astype(np.int64)
        weight = frame["block_number"].to_numpy()[keep] % 997 + 1
        out[view["name"]] = [int(keep.sum()), int(milli.sum()), int((milli * weight).sum())]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    args.work = args.work.resolve()  # Feast resolves the online store path against repo_path
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    import feast
    import dask
    import pandas as pd

    meta = json.loads((args.work / "meta.json").read_text())
    views = meta["views"]
    base = peak_rss_mib()
    started = time.perf_counter()
    store = make_store(args.work, views)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    entities = entity_frame(args.work)
    entities_read = time.perf_counter() - started
    features = [f"{v['name']}:{f}" for v in views for f in v["features"]]
    best, frame = None, None
    for _ in range(args.repeats):
        frame = None
        started, cpu = time.perf_counter(), time.process_time()
        frame = store.get_historical_features(entity_df=entities, features=features).to_df()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if best is None or seconds < best[0]:
            best = (seconds, cpu)
    import pyarrow as pa
    import pyarrow.parquet as pq
    keep = ["pool", "block_number", *(f for v in views for f in v["features"])]
    pq.write_table(pa.Table.from_pandas(frame[keep], preserve_index=False), args.work / "feast_out.parquet")
    print(json.dumps({
        "contender": "feast", "sliced": True, "entities": len(entities), "rows": len(frame),
        "views": len(views), "entities_read_s": entities_read, "setup_s": setup, "join_s": best[0],
        "total_s": best[0], "cpu_s": best[1], "peak_rss_mib": peak_rss_mib(), "base_rss_mib": base,
        "checksums": checksums(frame, views), "columns": list(frame.columns),
        "versions": {"feast": feast.__version__, "pandas": pd.__version__, "dask": dask.__version__},
    }))


if __name__ == "__main__":
    main()
