"""Benchmark: chainlake ingest vs cryo (cryo.freeze) on the same devnet chain, in the same run.

    .venv/bin/python bench/ingest.py [--blocks 2000] [--txs-per-block 20] [--repeats 3] [--no-results]

1. starts the devnet (anvil + DEX market) and mines `--blocks` blocks of `--txs-per-block` transactions;
2. for each dataset, alternately runs chainlake's `ingest` (in process) and `cryo.freeze` (in a separate
   venv, `bench/.cryo-venv`, created here on first use: cryo 0.3.2 needs an older polars than ours) on the
   same block range into fresh directories, `--repeats` times, and keeps each tool's best wall time;
3. prints a table, checks both wrote the same number of rows (exits non-zero otherwise, without touching
   bench/RESULTS.md) and writes bench/RESULTS.md (the generated part between its markers; the analysis
   around it is kept). The node's own CPU time during each run is reported too: on 2 cores the node and
   the client share the CPU, so it bounds what any client gets.

Timing: chainlake = wall time of the `ingest()` call; cryo = wall time of the `cryo.freeze()` call, measured
inside its own process (interpreter start and imports excluded for both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chainlake.devnet import Devnet  # noqa: E402
from chainlake.ingest import ingest  # noqa: E402

BENCH = ROOT / "bench"
CRYO_VENV = BENCH / ".cryo-venv"
CRYO_VERSION = "0.3.2"
DATASETS = ["blocks", "transactions", "logs", "traces"]
CRYO_RUNNER = """
import json, sys, time, cryo
url, dataset, blocks, out = sys.argv[1:5]
started = time.perf_counter()
cryo.freeze(dataset, blocks=[blocks], rpc=url, output_dir=out, no_verbose=True)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def cryo_python() -> Path:
    """The cryo venv's interpreter, creating the venv (python -m venv + pip install cryo) if needed."""
    python = CRYO_VENV / "bin" / "python"
    probe = [str(python), "-c", f"import cryo, importlib.metadata as m; assert m.version('cryo') == '{CRYO_VERSION}'"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {CRYO_VENV} with cryo=={CRYO_VERSION} ...", flush=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(CRYO_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"cryo=={CRYO_VERSION}"], check=True)
    subprocess.run(probe, check=True)
    return python


def parquet_rows(directory: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in directory.rglob("*.parquet") if ".cryo" not in p.parts)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (to show how much of a run the node itself costs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_cryo(python: Path, url: str, dataset: str, spec: str, work: Path, node_pid: int) -> tuple[float, int, float]:
    out = work / f"cryo-{dataset}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    node_before = cpu_seconds(node_pid)
    done = subprocess.run([str(python), "-c", CRYO_RUNNER, url, dataset, spec, str(out)], check=True,
                          capture_output=True, text=True)
    node_cpu = cpu_seconds(node_pid) - node_before
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds, parquet_rows(out), node_cpu


def run_chainlake(url: str, dataset: str, spec: str, work: Path, node_pid: int) -> tuple[float, int, float]:
    lake = work / f"chainlake-{dataset}"
    shutil.rmtree(lake, ignore_errors=True)
    node_before = cpu_seconds(node_pid)
    started = time.perf_counter()
    report = ingest(url, spec, [dataset], lake)
    seconds = time.perf_counter() - started
    node_cpu = cpu_seconds(node_pid) - node_before
    rows = parquet_rows(lake / dataset)
    assert rows == report.rows[dataset], (rows, report.rows)
    return seconds, rows, node_cpu


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        memory = "unknown"
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory": memory, "python": platform.python_version()}


def bench(blocks: int, txs_per_block: int, repeats: int, seed: int, signed: bool) -> tuple[list[dict], dict]:
    python = cryo_python()
    work = BENCH / ".work"  # git-ignored scratch space
    work.mkdir(exist_ok=True)
    with Devnet(seed=seed, txs_per_block=txs_per_block, signed=signed) as dn, \
            tempfile.TemporaryDirectory(dir=work) as tmp:
        started = time.perf_counter()
        summary = dn.run(blocks)
        build_s = time.perf_counter() - started
        head = summary.last_block
        spec = f"0:{head + 1}"  # blocks 0..head, same spelling for both tools (cryo: end exclusive)
        chain = {"kind": "signed" if signed else "unsigned", "blocks": head + 1, "market_blocks": summary.blocks, "txs_sent": sum(summary.txs_sent.values()),
                 "build_seconds": round(build_s, 1), "spec": spec}
        print(f"devnet: {chain}", flush=True)
        results = []
        for dataset in DATASETS:
            ours, theirs = [], []
            pid = dn.anvil.process.pid
            for _ in range(repeats):  # alternate so neither tool always runs on a warmer node
                ours.append(run_chainlake(dn.url, dataset, spec, Path(tmp), pid))
                theirs.append(run_cryo(python, dn.url, dataset, spec, Path(tmp), pid))
            (c_s, c_rows, c_node), (k_s, k_rows, k_node) = min(ours), min(theirs)
            row = {"dataset": dataset, "rows_chainlake": c_rows, "rows_cryo": k_rows,
                   "chainlake_s": c_s, "cryo_s": k_s, "chainlake_rows_s": c_rows / c_s, "cryo_rows_s": k_rows / k_s,
                   "ratio": (c_rows / c_s) / (k_rows / k_s) if k_rows else float("nan"),
                   "node_cpu_chainlake": c_node, "node_cpu_cryo": k_node}
            results.append(row)
            print(format_row(row), flush=True)
    return results, chain


def format_row(r: dict) -> str:
    same = "same rows" if r["rows_chainlake"] == r["rows_cryo"] else "ROW COUNTS DIFFER"
    return (f"{r['dataset']:13s} chainlake {r['rows_chainlake']:>8,} rows {r['chainlake_s']:7.3f}s "
            f"{r['chainlake_rows_s']:>10,.0f}/s | cryo {r['rows_cryo']:>8,} rows {r['cryo_s']:7.3f}s "
            f"{r['cryo_rows_s']:>10,.0f}/s | x{r['ratio']:.2f} ({same})")


CHAIN_TITLES = {
    "signed": "Signed devnet (anvil recovers each sender on every read: node-bound for both tools)",
    "unsigned": "Unsigned devnet (impersonated senders, read like a node that stores senders)",
}


def markdown(results: list[dict], chain: dict, info: dict, repeats: int) -> str:
    lines = [
        f"### {CHAIN_TITLES[chain['kind']]}",
        "",
        "| dataset | rows chainlake | rows cryo | chainlake s | cryo s | chainlake rows/s | cryo rows/s | ratio "
        "| node CPU s (chainlake / cryo) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['rows_chainlake']:,} | {r['rows_cryo']:,} | {r['chainlake_s']:.3f} | "
                     f"{r['cryo_s']:.3f} | {r['chainlake_rows_s']:,.0f} | {r['cryo_rows_s']:,.0f} | "
                     f"{r['ratio']:.2f}x | {r['node_cpu_chainlake']:.2f} / {r['node_cpu_cryo']:.2f} |")
    return "\n".join(lines) + "\n" + (
        f"\nMachine: {info['nproc']} cores, {info['cpu']}, {info['memory']} RAM, Python {info['python']}, "
        f"anvil 1.7.1, cryo {CRYO_VERSION}.\n"
        f"Chain: devnet blocks {chain['spec']} ({chain['blocks']:,} blocks, {chain['txs_sent']:,} market txs "
        f"sent, built in {chain['build_seconds']} s). Best of {repeats} alternating runs per tool.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--txs-per-block", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chains", default="signed,unsigned",
                        help="which devnet chains to build: signed (real signatures), unsigned (impersonated)")
    parser.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md's table")
    args = parser.parse_args()
    tables, results = [], []
    for kind in args.chains.split(","):
        if kind not in CHAIN_TITLES:
            sys.exit(f"unknown chain kind {kind!r}: use {', '.join(CHAIN_TITLES)}")
        chain_results, chain = bench(args.blocks, args.txs_per_block, args.repeats, args.seed, kind == "signed")
        tables.append(markdown(chain_results, chain, machine(), args.repeats))
        results += chain_results
    table = "\n".join(tables)
    print("\n" + table)
    differ = row_count_differences(results)
    if differ:  # a failed check: exit non-zero, and do not rewrite RESULTS.md (its analysis says "same rows")
        sys.exit(f"ROW COUNTS DIFFER ({'; '.join(differ)}): bench/RESULTS.md not rewritten")
    if not args.no_results:
        write_results(table)


def row_count_differences(results: list[dict]) -> list[str]:
    """One line per dataset where chainlake and cryo wrote different numbers of rows."""
    return [f"{r['dataset']}: chainlake {r['rows_chainlake']:,} rows, cryo {r['rows_cryo']:,}"
            for r in results if r["rows_chainlake"] != r["rows_cryo"]]


MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def write_results(table: str) -> None:
    """Replace the generated part of bench/RESULTS.md (between markers), keeping the written analysis."""
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else f"# Ingest benchmark\n\n{MARK_BEGIN}\n{MARK_END}\n"
    if MARK_BEGIN not in text:
        text += f"\n{MARK_BEGIN}\n{MARK_END}\n"
    head, rest = text.split(MARK_BEGIN, 1)
    tail = rest.split(MARK_END, 1)[1] if MARK_END in rest else ""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(f"{head}{MARK_BEGIN}\nLast run {stamp}:\n\n{table}{MARK_END}{tail}")


if __name__ == "__main__":
    main()
