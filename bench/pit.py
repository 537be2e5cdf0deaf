"""Benchmark: point-in-time (as-of) joins for a training frame — chainlake vs raw polars vs raw DuckDB vs Feast.

    .venv/bin/python bench/pit.py [--entities 10000000] [--state-rows 1000000] [--views 4]
                                  [--feast-entities 1000] [--skip-feast] [--rounds 2] [--repeats 2]
                                  [--only polars,duckdb,chainlake,feast] [--quick] [--no-results]

What it measures, on the same data in one run:

1. A deterministic generator (seed `--seed`) writes, once, under `bench/.work-pit/<size>/` (git-ignored;
   reused when the parameters match): `--views` feature views of `--state-rows` state rows each over 100 pools (the
   chainlake state-table layout: `LAKE/feature_<view>/data.parquet`, columns pool, block_number, valid_from,
   valid_to, three float features), a training frame of `--entities` entity rows (pool, block_number = the
   as-of block; shuffled, as a training frame comes), a `--feast-entities`-row slice of it, and the same
   state as Feast file sources (an event timestamp per row: genesis + 12 s x valid_from).
2. Each contender runs in its own subprocess (`pit.py --child NAME`), so its peak RSS (VmHWM) is its own:
   - `polars`: `read_parquet` + `sort("block_number")` (needed: polars' join_asof silently mismatches on
     unsorted input) + one `join_asof(left_on="block_number", right_on="valid_from", by="pool",
     strategy="backward", tolerance=ttl-1)` per view;
   - `duckdb`: tables loaded from Parquet, then one query chaining `ASOF LEFT JOIN ... ON e.pool = s.pool AND
     e.block_number >= s.valid_from` per view, ttl applied with CASE, fetched with `.to_arrow_table()`;
   - `chainlake`: `chainlake.features.training_frame(entities, [views], lake_dir=..., registry=...)` —
     it reads the state tables itself, so its state-read and join times are one number;
   - `feast`: `bench/pit_feast.py` in its own venv (`bench/.feast-venv`, feast pinned below, created here on
     first use): `FeatureStore.get_historical_features(entity_df, features).to_df()` on the file (dask)
     offline store. Feast's file store merges every entity row with every state row of its pool, then
     filters and de-duplicates, so it runs on the slice only; polars, DuckDB and chainlake are run on the
     same slice too, so the slice comparison is measured, and the full-size Feast time is a linear
     extrapolation in entity rows, labelled as such.
3. The answers are compared. polars, DuckDB and chainlake: per view, the count of non-null values of its
   first feature, the sum of floor(1000 x value), and the same sum weighted by (as-of block mod 997 + 1),
   so a value joined to the wrong row changes it (integers: exact, and independent of row order, which
   differs between contenders). The raw polars join of the slice is also checked against a brute-force
   join written from the definition (they could all share an off-by-one), and Feast's output is compared
   with it value by value (`compare_feast`: Feast drops some rows, see there).
4. Prints the table and (unless `--no-results`) rewrites the PIT section of bench/RESULTS.md between its
   markers (the analysis below them is kept). Exits non-zero if the contenders disagree.

The timed part is what a `training_frame` call does: reading the state tables + joining, with the entity
frame already in memory (its read is not counted). Best of `--rounds` alternating rounds x `--repeats` runs
inside each child; peak RSS covers the whole child, reads included.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results_md, also when imported
from results_md import RESULTS, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WORK_ROOT = BENCH / ".work-pit"  # git-ignored; one folder per data set (size, views, seed)
WORK = WORK_ROOT / "default"      # set by main() from the arguments; children get it as --work
FEAST_VENV = BENCH / ".feast-venv"
FEAST_VERSION = "0.67.0"
FEAST_SCRIPT = BENCH / "pit_feast.py"

POOLS = 100
BLOCK_RANGE = 20_000_000   # events and as-of blocks fall in [0, BLOCK_RANGE): about mainnet's height
FEATURES = ("a", "b", "c")  # per view: <view>_a, <view>_b, <view>_c (distinct names: no collisions)
GENESIS_UNIX = 1_438_269_973  # synthetic clock for Feast: time(block) = genesis + 12 s x block
SECONDS_PER_BLOCK = 12


# ---------------------------------------------------------------------------------------------- data

def view_names(views: int) -> list[str]:
    return [f"view{i}" for i in range(views)]


def ttl_blocks(view_index: int, state_rows: int) -> int | None:
    """Odd views carry a ttl of 1.5x the mean gap between a pool's events, so some as-of rows go stale
    (null) and every contender's ttl handling is exercised; even views have none."""
    if view_index % 2 == 0:
        return None
    return max(2, 3 * BLOCK_RANGE * POOLS // (2 * state_rows))


def pool_keys() -> list[str]:
    """100 fixed 0x addresses (strings, as chainlake stores pools)."""
    return ["0x" + hashlib.sha1(f"pool{i}".encode()).hexdigest() for i in range(POOLS)]


def random_u64(n: int, seed: int):
    """n uniform uint64 as a polars Series. Python's Mersenne Twister (stable across versions) through
    randbytes: the main venv has no numpy, and polars' own hash/sample are not stable across versions."""
    import pyarrow as pa

    data = random.Random(seed).randbytes(8 * n)
    return pl.from_arrow(pa.Array.from_buffers(pa.uint64(), n, [None, pa.py_buffer(data)]))


def unit_floats(n: int, seed: int):
    """n uniform floats in [0, 1) (53 random bits each)."""
    return (random_u64(n, seed) // 2048).cast(pl.Float64) * (2.0 ** -53)


def make_events(name: str, rows: int, seed: int):
    """Event rows (pool, block_number, features): each pool gets rows/100 events with strictly increasing
    blocks, random gaps averaging BLOCK_RANGE / (rows/100), so a pool's history spans the whole range."""
    per_pool = max(1, rows // POOLS)
    mean_gap = max(1, BLOCK_RANGE // per_pool)
    n = per_pool * POOLS
    gaps = 1 + (random_u64(n, seed) % (2 * mean_gap - 1)).cast(pl.Int64)
    frame = pl.DataFrame({
        "pool_idx": pl.int_range(0, n, eager=True) // per_pool,
        "gap": gaps,
    }).with_columns(block_number=pl.col("gap").cum_sum().over("pool_idx"))
    keys = pl.Series(pool_keys())
    features = {f"{name}_{f}": unit_floats(n, seed * 31 + k + 1) * 100.0 for k, f in enumerate(FEATURES)}
    return pl.DataFrame({
        "pool": keys.gather(frame["pool_idx"]),
        "block_number": frame["block_number"],
        **features,
    })


def state_from_events(events):
    """The state-table layout (used only when chainlake.features.write_state is not importable):
    valid_from = block_number + 1 (first block at which a trader knows the value), valid_to = the next
    row's valid_from of the same pool (exclusive), null for the latest; sorted by (pool, block_number)."""
    ordered = events.sort("pool", "block_number")
    features = [c for c in ordered.columns if c not in ("pool", "block_number")]
    return ordered.select(
        "pool", "block_number",
        valid_from=pl.col("block_number") + 1,
        valid_to=(pl.col("block_number") + 1).shift(-1).over("pool"),
        *features,
    )


def chainlake_views(views: int, state_rows: int, lake: Path) -> list:
    """The FeatureView objects chainlake's registry needs, or [] while chainlake.features is not there."""
    try:
        from chainlake.features import FeatureView
    except ImportError:
        return []
    out = []
    for i, name in enumerate(view_names(views)):
        out.append(make_feature_view(FeatureView, name, ttl_blocks(i, state_rows), lake))
    return out


def make_feature_view(cls, name: str, ttl: int | None, lake: Path):
    """Build a FeatureView with whatever fields this version of the dataclass takes (the API is new)."""
    import dataclasses

    wanted = {
        "name": name, "entity": "pool", "event_time": "block_number", "description": f"bench view {name}",
        "owner": "bench", "ttl_blocks": ttl, "reads": (), "source": lake / f"feature_{name}",
        "kind": "polars",
    }
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in wanted.items() if k in fields})


def write_states(work: Path, views: int, state_rows: int, seed: int) -> str:
    """Write every view's state table under work/lake, through chainlake's own write_state when it exists
    (so chainlake reads exactly its format), else through state_from_events. Returns which was used."""
    lake = work / "lake"
    cl_views = chainlake_views(views, state_rows, lake)
    for i, name in enumerate(view_names(views)):
        events = make_events(name, state_rows, seed * 1000 + i)
        if cl_views:
            from chainlake.features import write_state
            write_state(lake, cl_views[i], events)
        else:
            path = lake / f"feature_{name}" / "data.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            state_from_events(events).write_parquet(path)
        feast_source(pl.read_parquet(lake / f"feature_{name}" / "data.parquet"), name).write_parquet(
            work / "feast" / f"{name}.parquet")
    return "chainlake.features.write_state" if cl_views else "bench/pit.py state_from_events"


def feast_source(state, name: str):
    """The same state as a Feast FileSource: the event timestamp is the time of valid_from, so Feast's
    `feature ts <= entity ts` reproduces chainlake's "event block strictly before the as-of block"."""
    features = [c for c in state.columns if c.startswith(f"{name}_")]
    return state.select(
        "pool",
        event_timestamp=pl.from_epoch(pl.lit(GENESIS_UNIX) + pl.col("valid_from") * SECONDS_PER_BLOCK,
                                      time_unit="s").dt.replace_time_zone("UTC"),
        *features,
    )


def make_entities(rows: int, seed: int):
    """`rows` entity rows (pool, as-of block_number), distinct (pool, block) pairs — Feast collapses
    duplicate (key, timestamp) entity rows into one, which would break the row-count check — in random order."""
    space = POOLS * BLOCK_RANGE
    codes = pl.Series("code", [], dtype=pl.UInt64)
    draw = 0
    while codes.len() < rows:
        extra = int((rows - codes.len()) * 1.02) + 16
        codes = pl.concat([codes, random_u64(extra, seed + draw) % space]).unique()
        draw += 1
    order = random_u64(codes.len(), seed + 10_000)
    codes = pl.DataFrame({"code": codes, "order": order}).sort("order").head(rows)["code"]
    keys = pl.Series(pool_keys())
    return pl.DataFrame({
        "pool": keys.gather((codes // BLOCK_RANGE).cast(pl.Int64)),
        "block_number": (codes % BLOCK_RANGE).cast(pl.Int64),
    })


def generate(args) -> dict:
    """Write the data set once; reuse it when work/meta.json says it was made with the same parameters."""
    params = {"entities": args.entities, "state_rows": args.state_rows, "views": args.views,
              "seed": args.seed, "pools": POOLS,
              "block_range": BLOCK_RANGE, "polars": pl.__version__, "generator": 4,
              "chainlake_features": chainlake_features_available()}
    meta_path = WORK / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params:
            print(f"data: reusing {WORK.relative_to(ROOT)} ({meta['writer']})", flush=True)
            return write_slice(meta, args.feast_entities)
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "feast").mkdir(parents=True)
    (WORK_ROOT / ".gitignore").write_text("*\n")  # in case bench/.work-pit/ is not in .gitignore yet
    started = time.perf_counter()
    entities = make_entities(args.entities, args.seed)
    entities.write_parquet(WORK / "entities.parquet")
    del entities
    writer = write_states(WORK, args.views, args.state_rows, args.seed)
    views = [{"name": n, "ttl_blocks": ttl_blocks(i, args.state_rows),
              "features": [f"{n}_{f}" for f in FEATURES]} for i, n in enumerate(view_names(args.views))]
    meta = {"params": params, "views": views, "writer": writer,
            "seconds": round(time.perf_counter() - started, 1)}
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"data: generated in {meta['seconds']} s ({writer})", flush=True)
    return write_slice(meta, args.feast_entities)


def write_slice(meta: dict, rows: int) -> dict:
    """The slice every contender runs on for the Feast comparison: the first `rows` entity rows (the frame
    is shuffled, so a random sample). Rewritten every run: cheap, and --feast-entities may change."""
    pl.read_parquet(WORK / "entities.parquet", n_rows=rows).write_parquet(WORK / "entities_slice.parquet")
    return {**meta, "slice": rows}


def chainlake_features_available() -> bool:
    try:
        import chainlake.features  # noqa: F401
        return hasattr(chainlake.features, "training_frame")
    except ImportError:
        return False


# ------------------------------------------------------------------------------------- contenders

def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def checksums(frame, views: list[dict]) -> dict:
    """Per view, over its first feature: [non-null count, sum floor(1000 x), sum floor(1000 x) x (block mod
    997 + 1)]. Integers, so the order of rows does not matter and equality is exact."""
    out = {}
    for view in views:
        col = view["features"][0]
        milli = (pl.col(col) * 1000).floor().cast(pl.Int64)
        weight = pl.col("block_number") % 997 + 1
        row = frame.select(pl.col(col).count().alias("n"), milli.sum().alias("s"),
                           (milli * weight).sum().alias("w")).row(0)
        out[view["name"]] = [int(v) for v in row]
    return out


def run_polars(entities, meta: dict, lake: Path):
    """Raw polars: sort the entity frame once (join_asof needs it), then one backward join_asof per view
    on valid_from (the state is sorted by (pool, block_number), which is sorted within each pool: enough,
    checked against a brute-force join in development); ttl as tolerance: as_of - valid_from <= ttl - 1
    is as_of - block_number <= ttl."""
    timings = {}
    started = time.perf_counter()
    states = [pl.read_parquet(lake / f"feature_{v['name']}" / "data.parquet",
                              columns=["pool", "valid_from", *v["features"]]) for v in meta["views"]]
    timings["state_read_s"] = time.perf_counter() - started
    started = time.perf_counter()
    frame = entities.sort("block_number")
    timings["sort_s"] = time.perf_counter() - started
    for view, state in zip(meta["views"], states):
        ttl = view["ttl_blocks"]
        frame = frame.join_asof(state, left_on="block_number", right_on="valid_from", by="pool",
                                strategy="backward", tolerance=None if ttl is None else ttl - 1,
                                check_sortedness=False).drop("valid_from")
    timings["join_s"] = time.perf_counter() - started
    return frame, timings


def run_duckdb(entities, meta: dict, lake: Path):
    """Raw DuckDB: load each state table, then one query with an ASOF LEFT JOIN per view; ttl by CASE on
    the event block. Fetched as an Arrow table (DuckDB 2.x: `.to_arrow_table()`)."""
    import duckdb

    con = duckdb.connect()
    con.register("entities_frame", entities.to_arrow())
    con.execute("CREATE TABLE e AS SELECT * FROM entities_frame")
    con.unregister("entities_frame")
    timings = {}
    started = time.perf_counter()
    for i, view in enumerate(meta["views"]):
        path = lake / f"feature_{view['name']}" / "data.parquet"
        cols = ", ".join(["pool", "block_number", "valid_from", *view["features"]])
        con.execute(f"CREATE TABLE s{i} AS SELECT {cols} FROM read_parquet('{path}')")
    timings["state_read_s"] = time.perf_counter() - started
    selects, joins = ["e.pool", "e.block_number"], []
    for i, view in enumerate(meta["views"]):
        ttl = view["ttl_blocks"]
        for feature in view["features"]:
            if ttl is None:
                selects.append(f"s{i}.{feature}")
            else:
                selects.append(f"CASE WHEN e.block_number - s{i}.block_number > {ttl} THEN NULL "
                               f"ELSE s{i}.{feature} END AS {feature}")
        joins.append(f"ASOF LEFT JOIN s{i} ON e.pool = s{i}.pool AND e.block_number >= s{i}.valid_from")
    sql = f"SELECT {', '.join(selects)} FROM e {' '.join(joins)}"
    started = time.perf_counter()
    table = con.sql(sql).to_arrow_table()
    timings["join_s"] = time.perf_counter() - started
    return pl.from_arrow(table), timings


def run_chainlake(entities, meta: dict, lake: Path):
    """chainlake's training_frame: it reads the state tables itself, so one number (state read + join)."""
    from chainlake.features import Registry, training_frame

    registry = Registry.from_views(chainlake_views(len(meta["views"]), meta["params"]["state_rows"], lake))
    started = time.perf_counter()
    frame = training_frame(entities, [v["name"] for v in meta["views"]], lake_dir=lake, registry=registry)
    return frame, {"join_s": time.perf_counter() - started}


CONTENDERS = {"polars": run_polars, "duckdb": run_duckdb, "chainlake": run_chainlake}


def child(name: str, sliced: bool, repeats: int) -> None:
    """Run one contender `repeats` times in this process and print one JSON line: best timings, rows,
    checksums, peak RSS (VmHWM: the whole process, reads included) and the RSS before any data."""
    if name == "duckdb":
        import duckdb  # noqa: F401  (imported before the baseline, like polars)
    if name == "chainlake":
        import chainlake.features  # noqa: F401
    meta = json.loads((WORK / "meta.json").read_text())
    base = peak_rss_mib()
    started = time.perf_counter()
    entities = pl.read_parquet(WORK / ("entities_slice.parquet" if sliced else "entities.parquet"))
    entities_read = time.perf_counter() - started
    best, frame = None, None
    for _ in range(repeats):
        frame = None
        cpu = time.process_time()
        frame, timings = CONTENDERS[name](entities, meta, WORK / "lake")
        timings["cpu_s"] = time.process_time() - cpu  # all threads; less moved by other load than wall time
        timings["total_s"] = timings.get("state_read_s", 0.0) + timings["join_s"]
        if best is None or timings["total_s"] < best["total_s"]:
            best = timings
    print(json.dumps({
        "contender": name, "sliced": sliced, "entities": entities.height, "rows": frame.height,
        "views": len(meta["views"]), "entities_read_s": entities_read, **best,
        "peak_rss_mib": peak_rss_mib(), "base_rss_mib": base, "checksums": checksums(frame, meta["views"]),
        "columns": frame.columns,
    }))


# ------------------------------------------------------------------------------------------ driver

def spawn(cmd: list[str], label: str, env: dict | None = None) -> dict:
    """Run a child, echo its stderr on failure, return its last stdout line as JSON (or an error row)."""
    print(f"running {label} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        print(f"  {label} FAILED (exit {proc.returncode}):\n    " + "\n    ".join(tail), flush=True)
        return {"contender": label, "sliced": None, "error": tail[-1] if tail else f"exit {proc.returncode}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {label}: total {result['total_s']:.3f} s, peak {result['peak_rss_mib']:.0f} MiB", flush=True)
    return result


def run_child(name: str, sliced: bool, repeats: int) -> dict:
    label = f"{name} (slice)" if sliced else name
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--repeats", str(repeats),
           "--work", str(WORK)]
    return spawn(cmd + (["--sliced"] if sliced else []), label)


def run_rounds(names: list[str], sliced: bool, rounds: int, repeats: int) -> list[dict]:
    """`rounds` rounds of one child per contender, alternating (polars, duckdb, chainlake, polars, ...), so
    load from other processes on the 2 shared cores hits every contender alike; per contender the best
    round's timings and the highest peak RSS are kept."""
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            runs[name].append(run_child(name, sliced, repeats))
    merged = []
    for name, tries in runs.items():
        ok = [r for r in tries if "error" not in r]
        if not ok:
            merged.append(tries[0])
            continue
        best = min(ok, key=lambda r: r["total_s"])
        merged.append({**best, "peak_rss_mib": max(r["peak_rss_mib"] for r in ok), "runs": len(ok) * repeats})
    return merged


def feast_python() -> Path:
    """bench/.feast-venv with feast pinned, created on first use (idempotent: a stamp file per version).
    uv from chainlake's venv when present (seconds), else venv + pip."""
    python = FEAST_VENV / "bin" / "python"
    stamp = FEAST_VENV / f".installed-feast-{FEAST_VERSION}"
    if stamp.exists():
        return python
    uv = ROOT / ".venv" / "bin" / "uv"
    print(f"creating {FEAST_VENV.relative_to(ROOT)} (feast {FEAST_VERSION}) ...", flush=True)
    if uv.exists():
        subprocess.run([str(uv), "venv", "--quiet", "--allow-existing", "--python", sys.executable,
                        str(FEAST_VENV)], check=True)
        subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(python),
                        f"feast=={FEAST_VERSION}"], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(FEAST_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"feast=={FEAST_VERSION}"], check=True)
    stamp.touch()
    return python


def run_feast(repeats: int) -> dict:
    env = {**os.environ, "FEAST_USAGE": "False", "PYTHONWARNINGS": "ignore"}
    cmd = [str(feast_python()), str(FEAST_SCRIPT), "--work", str(WORK), "--repeats", str(repeats)]
    return spawn(cmd, "feast (slice)", env)


def agreement(results: list[dict]) -> list[str]:
    """Compare rows and checksums among the full-size runs and among the slice runs of polars, DuckDB and
    chainlake (Feast is compared row by row in `compare_feast`); list the differences."""
    problems = []
    for sliced in (False, True):
        group = [r for r in results if "error" not in r and r["sliced"] == sliced and r["contender"] != "feast"]
        if len(group) < 2:
            continue
        ref = group[0]
        for other in group:
            if other["rows"] != other["entities"]:
                problems.append(f"{other['contender']}: {other['rows']:,} rows for {other['entities']:,} entities")
            for view, sums in ref["checksums"].items():
                if other["checksums"].get(view) != sums:
                    problems.append(f"{other['contender']} {view}: checksum {other['checksums'].get(view)} "
                                    f"vs {ref['contender']} {sums}")
    return problems


def compare_feast(meta: dict) -> dict:
    """Feast's answer on the slice against a raw polars join of the same slice, value by value.

    Feast's file store returns *fewer rows* than it was given: after merging each entity row with its
    pool's feature rows it keeps only rows whose feature timestamp lies in [entity ts - ttl, entity ts]
    (or is null: a key absent from the source), so an entity row with no value known yet (before the
    pool's first event) or only stale values (past the ttl) is dropped instead of getting nulls. So:
    every row Feast returns must be in the reference with identical values, and the rows it drops must be
    exactly the reference rows with some null feature."""
    entities = pl.read_parquet(WORK / "entities_slice.parquet")
    ref, _ = run_polars(entities, meta, WORK / "lake")
    got = pl.read_parquet(WORK / "feast_out.parquet")
    features = [f for v in meta["views"] for f in v["features"]]
    got = got.with_columns(pl.col(features).fill_nan(None))
    keys = ["pool", "block_number"]
    both = ref.join(got, on=keys, how="inner", suffix="__feast")
    mismatched = both.filter(pl.any_horizontal(
        pl.col(f).ne_missing(pl.col(f"{f}__feast")) for f in features)).height
    extra = got.join(ref, on=keys, how="anti").height
    dropped = ref.join(got, on=keys, how="anti")
    ref_with_null = ref.filter(pl.any_horizontal(pl.col(features).is_null()))
    dropped_unexplained = dropped.join(ref_with_null, on=keys, how="anti").height
    null_rows_kept = ref_with_null.join(got, on=keys, how="semi").height
    ok = mismatched == 0 and extra == 0 and dropped_unexplained == 0
    return {"ok": ok, "entities": entities.height, "returned": got.height, "compared": both.height,
            "values": both.height * len(features), "mismatched_rows": mismatched, "extra_rows": extra,
            "dropped": dropped.height, "dropped_unexplained": dropped_unexplained,
            "null_rows_kept": null_rows_kept}


def definition_check(meta: dict) -> bool:
    """The raw polars join on the slice against the definition, computed the slow obvious way (every state
    row of the pool with event block < as-of block, keep the latest; null past the ttl): the contenders
    agreeing with each other is not enough, they could share an off-by-one."""
    entities = pl.read_parquet(WORK / "entities_slice.parquet")
    ref, _ = run_polars(entities, meta, WORK / "lake")
    expected = entities
    for view in meta["views"]:
        state = pl.read_parquet(WORK / "lake" / f"feature_{view['name']}" / "data.parquet",
                                columns=["pool", "block_number", *view["features"]])
        latest = (entities.join(state, on="pool", suffix="_event")
                  .filter(pl.col("block_number_event") < pl.col("block_number"))
                  .sort("block_number_event").group_by("pool", "block_number").last())
        if view["ttl_blocks"] is not None:
            stale = pl.col("block_number") - pl.col("block_number_event") > view["ttl_blocks"]
            latest = latest.with_columns(pl.when(stale).then(None).otherwise(pl.col(f)).alias(f)
                                         for f in view["features"])
        expected = expected.join(latest.drop("block_number_event"), on=["pool", "block_number"], how="left")
    keys = ["pool", "block_number"]
    return ref.sort(keys).equals(expected.select(ref.columns).sort(keys))


def feast_text(check: dict | None) -> str:
    if check is None:
        return "Feast not run."
    verdict = "**yes**" if check["ok"] else "**NO**"
    return (f"Feast agrees on every row it returns: {verdict} — {check['returned']:,} of {check['entities']:,} "
            f"slice rows returned, {check['values']:,} feature values compared with the polars join of the same "
            f"slice, {check['mismatched_rows']} rows differ, {check['extra_rows']} rows not in the reference; "
            f"the {check['dropped']:,} rows Feast dropped all have a null feature in the reference (unexplained: "
            f"{check['dropped_unexplained']}; reference rows with a null that Feast kept: "
            f"{check['null_rows_kept']}): Feast's file store drops an entity row when some view has no value "
            "known in [as-of − ttl, as-of] instead of returning nulls.")


def ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 100 else f"{ratio:,.0f}x"


def fmt_s(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def table(results: list[dict], meta: dict) -> str:
    """The markdown table: one row per contender run; ratios against polars of the same size."""
    polars = {r["sliced"]: r for r in results if r.get("contender") == "polars" and "error" not in r}
    full_entities = meta["params"]["entities"]
    lines = [
        "| contender | entity rows | rows out | views | state read s | join s | total s | total s / view | "
        "CPU s | peak RSS MiB (base) | vs polars / view |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['contender']} | failed: {r['error'][:80]} | | | | | | | | | |")
            continue
        name = r["contender"] + (" (slice)" if r["sliced"] else "")
        ref = polars.get(r["sliced"])
        ratio = ratio_text(r["total_s"] / ref["total_s"]) if ref else "—"
        split = "state_read_s" in r
        join_text = fmt_s(r["join_s"]) + (f" (sort {r['sort_s']:.3f})" if r.get("sort_s") else "")
        lines.append(
            f"| {name} | {r['entities']:,} | {r['rows']:,} | {r['views']} | "
            f"{fmt_s(r['state_read_s']) if split else 'in total'} | "
            f"{join_text if split else 'in total'} | {r['total_s']:.3f} | {r['total_s'] / r['views']:.3f} | "
            f"{r['cpu_s']:.2f} | "
            f"{r['peak_rss_mib']:,.0f} ({r['base_rss_mib']:,.0f}) | {ratio} |")
    feast = next((r for r in results if r["contender"] == "feast" and "error" not in r), None)
    if feast and polars.get(False):
        scale = full_entities / feast["entities"]
        est = feast["total_s"] * scale
        lines.append(
            f"| feast — **extrapolated** x{scale:,.0f} from the slice (linear in entity rows; not run) | "
            f"{full_entities:,} | | {feast['views']} | | | ~{est:,.0f} | ~{est / feast['views']:,.0f} | | "
            f"{memory_estimate(feast, scale)} | "
            f"~{est / polars[False]['total_s']:,.0f}x |")
    return "\n".join(lines)


def memory_estimate(feast: dict, scale: float) -> str:
    """Feast's memory grows with entity rows x state rows per pool (its merge): scale the growth above
    the child's baseline linearly, as the time."""
    mib = feast["base_rss_mib"] + (feast["peak_rss_mib"] - feast["base_rss_mib"]) * scale
    text = f"~{mib / 1024 / 1024:,.0f} TiB" if mib >= 1024 * 1024 else f"~{mib / 1024:,.0f} GiB"
    ram_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 20
    return text + (" (more than this machine has)" if mib > ram_mib else "")


def speedups(results: list[dict]) -> str:
    """The goal's two ratios, stated plainly."""
    by = {(r["contender"], r["sliced"]): r for r in results if "error" not in r}
    out = []
    cl, pol = by.get(("chainlake", False)), by.get(("polars", False))
    if cl and pol:
        out.append(f"chainlake / raw polars, full size, per view: {cl['total_s'] / pol['total_s']:.2f}x "
                   f"(goal ≤ 2x: {'met' if cl['total_s'] <= 2 * pol['total_s'] else 'NOT met'})")
    cls, feast = by.get(("chainlake", True)), by.get(("feast", True))
    if cls and feast:
        out.append(f"Feast / chainlake on the same {feast['entities']:,}-row slice: "
                   f"{feast['total_s'] / cls['total_s']:,.0f}x (goal ≥ 20x: "
                   f"{'met' if feast['total_s'] >= 20 * cls['total_s'] else 'NOT met'})")
    if cl and feast:
        est = feast["total_s"] * cl["entities"] / feast["entities"]
        out.append(f"Feast extrapolated to {cl['entities']:,} rows / chainlake measured: ~{est / cl['total_s']:,.0f}x")
    return "\n".join(f"- {line}" for line in out)


def machine(feast: dict | None) -> str:
    import duckdb
    import pyarrow as pa

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                  if l.startswith("MemTotal"))
    parts = [f"{os.cpu_count()} cores", cpu, f"{mem_kb / 1024 / 1024:.1f} GiB RAM",
             f"Python {platform.python_version()}", f"polars {pl.__version__}", f"duckdb {duckdb.__version__}",
             f"pyarrow {pa.__version__}"]
    if feast and "versions" in feast:
        parts.append(", ".join(f"{k} {v}" for k, v in feast["versions"].items()) + " (Feast venv)")
    return ", ".join(parts)


def report(results: list[dict], meta: dict, args, problems: list[str], check: dict | None) -> str:
    p = meta["params"]
    feast = next((r for r in results if r["contender"] == "feast" and "error" not in r), None)
    ttls = ", ".join(f"{v['name']} {v['ttl_blocks'] or 'none'}" for v in meta["views"])
    agree = "**yes**" if not problems else "**NO**: " + "; ".join(problems)
    return "\n\n".join([
        table(results, meta),
        speedups(results),
        f"Data: {p['entities']:,} entity rows (distinct (pool, as-of block) pairs, shuffled) × {p['views']} views "
        f"of {p['state_rows']:,} state rows each, {POOLS} pools (0x strings), blocks 0..{BLOCK_RANGE:,}, "
        f"3 float64 features per view, ttl blocks: {ttls}; seed {p['seed']}; state written by {meta['writer']}. "
        f"Slice: the first {meta['slice']:,} entity rows (a random sample).",
        f"Machine: {machine(feast)}. Load average (1 min) {meta['load'][0]:.2f} at the start, "
        f"{meta['load'][1]:.2f} at the end (other work on the same 2 cores moves the numbers).",
        f"Timing: best of {args.rounds} alternating rounds x {args.repeats} runs, one subprocess per contender "
        f"and round (Feast: {args.feast_repeats} run); "
        "*total* = reading the state Parquet + the join (+ polars' sort of the entity frame), with the entity "
        "frame already in memory (polars/chainlake: a polars DataFrame; DuckDB: a loaded table; Feast: a "
        "pandas DataFrame; its FeatureStore set-up and `apply` are not counted). CPU s = the child's CPU time "
        "(all threads) in the same best run. Peak RSS = the child's VmHWM, whole process (entity frame and all "
        "repeats included); base = RSS after imports, before any data.",
        f"Same answers among polars, DuckDB and chainlake (one row per entity row; per view, exact integer "
        f"checksums of a feature column: non-null count, sum and as-of-weighted sum of floor(1000 x); full size "
        f"and slice), and equal to a brute-force join by the definition on the slice: {agree}.",
        feast_text(check),
    ]) + "\n"


def write_results(text: str) -> None:
    """Rewrite this benchmark's section of bench/RESULTS.md (the analysis under it is kept)."""
    write_section("pit", text, 'Point-in-time join benchmark: chainlake vs polars, DuckDB, Feast',
                  '`make bench-pit` (= `.venv/bin/python bench/pit.py`). The part between the markers below is rewritten by every run; the analysis under it is not.')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10_000_000, help="entity rows of the training frame")
    parser.add_argument("--state-rows", type=int, default=1_000_000, help="state rows per view")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--feast-entities", type=int, default=1_000,
                        help="entity rows of the slice that Feast (and everyone again) runs on")
    parser.add_argument("--skip-feast", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs per contender inside each child")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds of one child per contender (best of rounds x repeats)")
    parser.add_argument("--feast-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (200k x 20k x 2 views, 2k slice)")
    parser.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md")
    parser.add_argument("--only", default="", help="comma-separated contenders to run (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--sliced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.entities, args.state_rows, args.views = 200_000, 20_000, 2
        args.feast_entities, args.repeats, args.rounds = 2_000, 1, 1
        args.no_results = True
    return args


def main() -> None:
    global WORK
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    WORK = args.work or WORK_ROOT / f"e{args.entities}-s{args.state_rows}-v{args.views}-seed{args.seed}"
    if args.child:
        child(args.child, args.sliced, args.repeats)
        return
    meta = generate(args)
    wanted = [c for c in args.only.split(",") if c] or ["polars", "duckdb", "chainlake", "feast"]
    if "chainlake" in wanted and not chainlake_features_available():
        print("chainlake.features.training_frame is not there yet: skipping chainlake", flush=True)
        wanted.remove("chainlake")
    if args.skip_feast and "feast" in wanted:
        wanted.remove("feast")
    load_before = os.getloadavg()[0]
    others = [name for name in wanted if name != "feast"]
    results = run_rounds(others, False, args.rounds, args.repeats)
    if "feast" in wanted:
        results += run_rounds(others, True, args.rounds, args.repeats)
        results.append(run_feast(args.feast_repeats))
    meta["load"] = (load_before, os.getloadavg()[0])
    problems = agreement(results)
    if not definition_check(meta):
        problems.append("the raw polars join differs from the brute-force definition on the slice")
    feast_ran = any(r["contender"] == "feast" and "error" not in r for r in results)
    check = compare_feast(meta) if feast_ran else None
    if check and not check["ok"]:
        problems.append("Feast's rows differ from the reference (see above)")
    text = report(results, meta, args, problems, check)
    print("\n" + text)
    if problems or any("error" in r for r in results):
        sys.exit("CONTENDERS DISAGREE OR FAILED: bench/RESULTS.md not rewritten")
    if not args.no_results:
        write_results(text)
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
