"""Benchmark: chainlake ingest vs cryo (cryo.freeze) on the same devnet chain, in the same run.

    .venv/bin/python bench/ingest.py [--blocks 2000] [--txs-per-block 20] [--repeats 3] [--latency-ms 20]
                                     [--no-tuned] [--no-results]

1. starts the devnet (anvil + DEX market) and mines `--blocks` blocks of `--txs-per-block` transactions;
2. for each dataset, alternately runs chainlake's `ingest` (in process) and `cryo.freeze` (in a separate
   venv, `bench/.cryo-venv`, created here on first use: cryo 0.3.2 needs an older polars than ours) on the
   same block range into fresh directories, `--repeats` times, and keeps each tool's best wall time;
3. on the unsigned chain only (to keep the run short), does it again through a forwarding proxy that
   delays every HTTP request by `--latency-ms` before passing it to anvil: a remote node, one round trip
   per request (`--latency-ms 0` skips this). The proxy runs in its own process and counts what each tool
   sends (HTTP requests, JSON-RPC calls by method, peak requests in flight); its own CPU time is reported
   per run, and its capacity is measured once at 0 ms, to show it is not what limits either tool. Then,
   unless `--no-tuned`, transactions through the same proxy with the labelled non-default concurrency
   settings of TUNED (the main tables keep both tools at their defaults);
4. prints the tables, checks both tools wrote the same number of rows (exits non-zero otherwise, without
   touching bench/RESULTS.md) and writes bench/RESULTS.md (the generated part between its markers; the
   analysis around it is kept). The node's own CPU time during each run is reported too: on 2 cores the
   node and the client share the CPU, so it bounds what any client gets.

Both tools run at their default concurrency: chainlake's `ingest()` defaults (max_concurrency=4 HTTP
requests in flight, JSON-RPC batches) and cryo's (max_concurrent_requests=100, max_concurrent_chunks=4,
one call per HTTP request).

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
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # results_md, also when this file is imported by the tests

from chainlake.devnet import Devnet  # noqa: E402
from chainlake.ingest import ingest  # noqa: E402
from results_md import write_section  # noqa: E402

BENCH = ROOT / "bench"
CRYO_VENV = BENCH / ".cryo-venv"
CRYO_VERSION = "0.3.2"
DATASETS = ["blocks", "transactions", "logs", "traces"]
CRYO_RUNNER = """
import json, sys, time, cryo
url, dataset, blocks, out = sys.argv[1:5]
options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
started = time.perf_counter()
cryo.freeze(dataset, blocks=[blocks], rpc=url, output_dir=out, no_verbose=True, **options)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""

# The remote-node proxy, run as `python -c PROXY_SERVER UPSTREAM LATENCY_MS POOL` (chainlake's venv: aiohttp,
# uvloop, orjson). It prints {"port": N} once listening on 127.0.0.1. Every HTTP request is held LATENCY_MS
# (one round trip to a hosted node), then forwarded to UPSTREAM over a pool of keep-alive connections (at
# most POOL at once: more than any tool here keeps in flight); `GET /__stats[?reset]` returns the counters
# (requests, JSON-RPC calls by method, peak requests in flight) and is not counted.
# Server side: aiohttp's low-level server (its C HTTP parser) on uvloop. Upstream side: a minimal
# HTTP/1.1 client on asyncio protocols, because aiohttp's ClientSession cost ~130 µs of CPU per request
# here (the whole proxy 160 µs, against ~55 µs with this client): at cryo's 100 requests in flight and
# 20 ms, up to 5,000 requests/s, that would have made the proxy itself a bottleneck.
PROXY_SERVER = r'''
import asyncio, sys
from urllib.parse import urlsplit
import orjson
from aiohttp import web
from aiohttp.web_server import Server

upstream, delay, pool_size = sys.argv[1], float(sys.argv[2]) / 1000, int(sys.argv[3])
target = urlsplit(upstream)
HOST, PORT, PATH = target.hostname, target.port or 80, target.path or "/"
COUNTERS = {"requests": 0, "calls": 0, "methods": {}, "peak_in_flight": 0, "errors": 0, "upstream_connections": 0}
stats = {"in_flight": 0, **COUNTERS}


class Upstream(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to the node, one request at a time (answers carry Content-Length)."""

    def __init__(self):
        self.transport, self.waiter = None, None
        self.head, self.buffer, self.chunks, self.have, self.need = None, b"", [], 0, -1

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.need < 0:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            data, self.buffer = self.buffer[end + 4:], b""
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            if "content-length" not in headers:
                self.fail(ConnectionError(f"upstream answer without Content-Length: {lines[0]}"))
                return
            self.head = (int(lines[0].split()[1]), headers.get("content-type", "application/json"))
            self.need, self.chunks, self.have = int(headers["content-length"]), [], 0
        self.chunks.append(data)
        self.have += len(data)
        if self.have >= self.need:
            body, self.chunks, self.need = b"".join(self.chunks), [], -1
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result((*self.head, body))

    def fail(self, exc):
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc):
        self.transport = None
        self.fail(exc or ConnectionError("upstream closed the connection"))

    async def send(self, method, content_type, body):
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(f"{method} {PATH} HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nContent-Type: {content_type}\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        return await self.waiter


async def main():
    loop = asyncio.get_running_loop()
    idle, slots = [], asyncio.Semaphore(pool_size)

    async def forward(method, content_type, body):
        async with slots:
            for attempt in (0, 1):  # an idle connection the node closed meanwhile: once more on a new one
                fresh = not idle
                if fresh:
                    _, conn = await loop.create_connection(Upstream, HOST, PORT)
                    stats["upstream_connections"] += 1
                else:
                    conn = idle.pop()
                try:
                    answer = await conn.send(method, content_type, body)
                except (ConnectionError, OSError):
                    if fresh or attempt:
                        raise
                    continue
                if conn.transport is not None:
                    idle.append(conn)
                return answer

    async def handle(request):
        if request.path == "/__stats":
            answer = orjson.dumps(stats)
            if "reset" in request.query:
                stats.update(COUNTERS, methods={}, peak_in_flight=stats["in_flight"])
            return web.Response(body=answer, content_type="application/json")
        body = await request.content.read()
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            try:
                message = orjson.loads(body)
                calls = message if isinstance(message, list) else [message]
                for call in calls:
                    name = call.get("method") if isinstance(call, dict) else None
                    stats["methods"][name] = stats["methods"].get(name, 0) + 1
                stats["calls"] += len(calls)
            except orjson.JSONDecodeError:
                pass
            if delay:
                await asyncio.sleep(delay)
            status, content_type, answer = await forward(
                request.method, request.headers.get("Content-Type", "application/json"), body)
            return web.Response(body=answer, status=status, headers={"Content-Type": content_type})
        except BaseException:
            stats["errors"] += 1
            raise
        finally:
            stats["in_flight"] -= 1

    server = await loop.create_server(Server(handle, access_log=None), "127.0.0.1", 0, backlog=4096)
    print(orjson.dumps({"port": server.sockets[0].getsockname()[1]}).decode(), flush=True)
    await asyncio.Event().wait()

try:
    import uvloop  # measured: ~55 µs of proxy CPU per request with uvloop, ~75 µs with asyncio's own loop
except ImportError:
    asyncio.run(main())
else:
    uvloop.run(main())
'''

# Load for the proxy's capacity check: `python -c LOAD_GENERATOR URL REQUESTS CONCURRENCY` sends REQUESTS
# eth_chainId calls, CONCURRENCY at a time over keep-alive connections, and prints the wall time.
LOAD_GENERATOR = r'''
import asyncio, json, sys, time
import aiohttp, uvloop
url, total, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'

async def main():
    left = total
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as answer:
                    assert answer.status == 200, answer.status
                    await answer.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        print(json.dumps({"seconds": time.perf_counter() - started}))

uvloop.run(main())
'''
PROXY_POOL = 512  # upstream connections at most: cryo keeps up to 100 requests in flight by default


class Proxy:
    """The remote-node proxy (PROXY_SERVER) in its own process; a context manager.

        with Proxy(anvil_url, latency_ms=20) as proxy:
            proxy.stats(reset=True); ...run a tool against proxy.url...; proxy.stats()
    """

    def __init__(self, upstream: str, latency_ms: float, pool: int = PROXY_POOL):
        self.upstream, self.latency_ms, self.pool = upstream, latency_ms, pool
        self.process: subprocess.Popen | None = None
        self.url = ""
        # Our own counter reads must not go through an HTTP proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self) -> "Proxy":
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROXY_SERVER, self.upstream, str(self.latency_ms), str(self.pool)],
            stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError("the bench proxy did not start (see its error above)")
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}/"
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self, reset: bool = False) -> dict:
        """Counters since the last reset: requests, calls, methods, peak_in_flight, errors, upstream_connections."""
        with self._opener.open(self.url + "__stats" + ("?reset" if reset else ""), timeout=10) as answer:
            return json.loads(answer.read())


def proxy_capacity(upstream: str, requests: int = 20_000, concurrency: int = 100) -> dict:
    """Requests/s a 0 ms proxy sustains on this machine (eth_chainId from LOAD_GENERATOR, answered by the node,
    all three processes on the same cores) and its CPU per request: the headroom the remote runs have."""
    with Proxy(upstream, 0) as proxy:
        before = cpu_seconds(proxy.pid)
        done = subprocess.run([sys.executable, "-c", LOAD_GENERATOR, proxy.url, str(requests), str(concurrency)],
                              check=True, capture_output=True, text=True)
        cpu = cpu_seconds(proxy.pid) - before
        counted = proxy.stats()["requests"]
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    assert counted == requests, (counted, requests)
    return {"requests": requests, "concurrency": concurrency, "requests_s": requests / seconds,
            "cpu_s": cpu, "cpu_per_wall": cpu / seconds, "us_per_request": cpu / requests * 1e6}


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


class Meter:
    """Node CPU (and, through a proxy, the proxy's CPU and counters) over one tool run."""

    def __init__(self, node_pid: int, proxy: Proxy | None):
        self.node_pid, self.proxy = node_pid, proxy

    def __enter__(self) -> "Meter":
        if self.proxy is not None:
            self.proxy.stats(reset=True)
            self.proxy_before = cpu_seconds(self.proxy.pid)
        self.node_before = cpu_seconds(self.node_pid)
        return self

    def __exit__(self, *exc) -> None:
        self.result = {"node_cpu": cpu_seconds(self.node_pid) - self.node_before}
        if self.proxy is not None and exc[0] is None:
            stats = self.proxy.stats()
            assert stats["errors"] == 0, f"the proxy failed {stats['errors']} requests"
            self.result.update(proxy_cpu=cpu_seconds(self.proxy.pid) - self.proxy_before, requests=stats["requests"],
                               calls=stats["calls"], peak=stats["peak_in_flight"], methods=stats["methods"])


def run_cryo(python: Path, url: str, dataset: str, spec: str, work: Path, node_pid: int,
             proxy: Proxy | None = None, options: dict | None = None) -> dict:
    out = work / f"cryo-{dataset}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with Meter(node_pid, proxy) as meter:
        done = subprocess.run([str(python), "-c", CRYO_RUNNER, url, dataset, spec, str(out), json.dumps(options or {})],
                              check=True, capture_output=True, text=True)
    seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {"seconds": seconds, "rows": parquet_rows(out), **meter.result}


def run_chainlake(url: str, dataset: str, spec: str, work: Path, node_pid: int,
                  proxy: Proxy | None = None, options: dict | None = None) -> dict:
    lake = work / f"chainlake-{dataset}"
    shutil.rmtree(lake, ignore_errors=True)
    with Meter(node_pid, proxy) as meter:
        started = time.perf_counter()
        report = ingest(url, spec, [dataset], lake, **(options or {}))
        seconds = time.perf_counter() - started
    rows = parquet_rows(lake / dataset)
    assert rows == report.rows[dataset], (rows, report.rows)
    return {"seconds": seconds, "rows": rows, **meter.result}


def compare(python: Path, url: str, dataset: str, spec: str, work: Path, node_pid: int, repeats: int,
            proxy: Proxy | None = None, scenario: str = "local", chainlake_options: dict | None = None,
            cryo_options: dict | None = None) -> dict:
    """Both tools on one dataset, alternating, `repeats` times each; one result row from each tool's best run."""
    ours, theirs = [], []
    for _ in range(repeats):  # alternate so neither tool always runs on a warmer node
        ours.append(run_chainlake(url, dataset, spec, work, node_pid, proxy, chainlake_options))
        theirs.append(run_cryo(python, url, dataset, spec, work, node_pid, proxy, cryo_options))
    c, k = min(ours, key=lambda r: r["seconds"]), min(theirs, key=lambda r: r["seconds"])
    row = {"dataset": dataset, "scenario": scenario, "rows_chainlake": c["rows"], "rows_cryo": k["rows"],
           "chainlake_s": c["seconds"], "cryo_s": k["seconds"],
           "chainlake_rows_s": c["rows"] / c["seconds"], "cryo_rows_s": k["rows"] / k["seconds"],
           "ratio": (c["rows"] / c["seconds"]) / (k["rows"] / k["seconds"]) if k["rows"] else float("nan"),
           "node_cpu_chainlake": c["node_cpu"], "node_cpu_cryo": k["node_cpu"]}
    if proxy is not None:
        for tool, best in (("chainlake", c), ("cryo", k)):
            row.update({f"{key}_{tool}": best[key] for key in ("proxy_cpu", "requests", "calls", "peak", "methods")})
        # the proxy's heaviest load in any run of this dataset, in core-seconds per wall-second
        row["proxy_load"] = max(r["proxy_cpu"] / r["seconds"] for r in ours + theirs)
        row["request_rate"] = max(r["requests"] / r["seconds"] for r in ours + theirs)  # busiest run, requests/s
    return row


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


# Tuned runs through the remote-node proxy (transactions only), each labelled with what it changes; the
# main tables keep both tools at their defaults. (label, chainlake ingest() options, cryo.freeze options)
TUNED = [
    ("chainlake raised to 16 in flight; cryo at its default (100)", {"max_concurrency": 16}, {}),
    ("both set to 16 in flight", {"max_concurrency": 16}, {"max_concurrent_requests": 16}),
    ("both set to 4 in flight (chainlake's default; cryo lowered)", {}, {"max_concurrent_requests": 4}),
]
TUNED_DATASET = "transactions"


def bench(blocks: int, txs_per_block: int, repeats: int, seed: int, signed: bool,
          latency_ms: float = 0, tuned: bool = False) -> tuple[list[dict], dict]:
    """Rows for every dataset on one chain (scenario "local"); on the unsigned chain with `latency_ms` > 0,
    rows through the remote-node proxy too (scenario "remote"; the proxy's capacity is in chain["proxy"])
    and, with `tuned`, the TUNED settings on transactions through it (scenario "tuned")."""
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
        pid = dn.anvil.process.pid
        results = []
        for dataset in DATASETS:
            results.append(compare(python, dn.url, dataset, spec, Path(tmp), pid, repeats))
            print(format_row(results[-1]), flush=True)
        if latency_ms and not signed:
            capacity = proxy_capacity(dn.url)
            chain["proxy"] = {"latency_ms": latency_ms, "pool": PROXY_POOL, "capacity": capacity}
            print(f"proxy capacity at 0 ms: {capacity['requests_s']:,.0f} requests/s at {capacity['concurrency']} "
                  f"in flight, {capacity['cpu_per_wall']:.2f} CPU-s per s, {capacity['us_per_request']:.0f} µs/request",
                  flush=True)
            with Proxy(dn.url, latency_ms) as proxy:
                for dataset in DATASETS:
                    results.append(compare(python, proxy.url, dataset, spec, Path(tmp), pid, repeats, proxy, "remote"))
                    print(format_row(results[-1]), flush=True)
                for label, ours, theirs in TUNED if tuned else []:
                    row = compare(python, proxy.url, TUNED_DATASET, spec, Path(tmp), pid, repeats, proxy, "tuned",
                                  ours, theirs)
                    results.append(row | {"setting": label, "options_chainlake": ours, "options_cryo": theirs})
                    print(f"tuned: {label}\n" + format_row(results[-1]), flush=True)
    return results, chain


def format_row(r: dict) -> str:
    same = "same rows" if r["rows_chainlake"] == r["rows_cryo"] else "ROW COUNTS DIFFER"
    line = (f"{r['dataset']:13s} chainlake {r['rows_chainlake']:>8,} rows {r['chainlake_s']:7.3f}s "
            f"{r['chainlake_rows_s']:>10,.0f}/s | cryo {r['rows_cryo']:>8,} rows {r['cryo_s']:7.3f}s "
            f"{r['cryo_rows_s']:>10,.0f}/s | x{r['ratio']:.2f} ({same})")
    if r.get("scenario") in ("remote", "tuned"):
        line += (f" | {r['scenario']}: requests {r['requests_chainlake']:,} / {r['requests_cryo']:,}, calls "
                 f"{r['calls_chainlake']:,} / {r['calls_cryo']:,}, peak in flight {r['peak_chainlake']} / "
                 f"{r['peak_cryo']}, proxy CPU {r['proxy_cpu_chainlake']:.2f} / {r['proxy_cpu_cryo']:.2f} s"
                 f"\n    chainlake {methods_text(r['methods_chainlake'])}\n    cryo      {methods_text(r['methods_cryo'])}")
    return line


def methods_text(methods: dict) -> str:
    return ", ".join(f"{name} ×{count:,}" for name, count in sorted(methods.items(), key=lambda kv: -kv[1]))


CHAIN_TITLES = {
    "signed": "Signed devnet (anvil recovers each sender on every read: node-bound for both tools)",
    "unsigned": "Unsigned devnet (impersonated senders, read like a node that stores senders)",
}
PEAK_NOTE = ("Peak in flight is measured by the proxy: chainlake's max_concurrency sizes its worker pool, and a "
             "fetch that fits in one batch is sent from its partition thread instead, so its peak can pass the "
             "setting by a few requests for a moment (e.g. the short last partition of the range).")
REMOTE_TITLE = "Unsigned devnet behind a {latency} ms round-trip proxy (a remote node)"


def markdown(results: list[dict], chain: dict, info: dict, repeats: int) -> str:
    local = [r for r in results if r.get("scenario", "local") == "local"]
    remote = [r for r in results if r.get("scenario") == "remote"]
    tuned = [r for r in results if r.get("scenario") == "tuned"]
    lines = [
        f"### {CHAIN_TITLES[chain['kind']]}",
        "",
        "| dataset | rows chainlake | rows cryo | chainlake s | cryo s | chainlake rows/s | cryo rows/s | ratio "
        "| node CPU s (chainlake / cryo) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in local:
        lines.append(f"| {r['dataset']} | {r['rows_chainlake']:,} | {r['rows_cryo']:,} | {r['chainlake_s']:.3f} | "
                     f"{r['cryo_s']:.3f} | {r['chainlake_rows_s']:,.0f} | {r['cryo_rows_s']:,.0f} | "
                     f"{r['ratio']:.2f}x | {r['node_cpu_chainlake']:.2f} / {r['node_cpu_cryo']:.2f} |")
    text = "\n".join(lines) + "\n" + (
        f"\nMachine: {info['nproc']} cores, {info['cpu']}, {info['memory']} RAM, Python {info['python']}, "
        f"anvil 1.7.1, cryo {CRYO_VERSION}.\n"
        f"Chain: devnet blocks {chain['spec']} ({chain['blocks']:,} blocks, {chain['txs_sent']:,} market txs "
        f"sent, built in {chain['build_seconds']} s). Best of {repeats} alternating runs per tool.\n")
    if remote:
        text += "\n" + remote_markdown(remote, chain, repeats)
    if tuned:
        text += "\n" + tuned_markdown(tuned, chain, repeats)
    return text


def remote_markdown(results: list[dict], chain: dict, repeats: int) -> str:
    proxy = chain["proxy"]
    capacity = proxy["capacity"]
    title = REMOTE_TITLE.format(latency=f"{proxy['latency_ms']:g}")
    lines = [
        f"### {title}",
        "",
        "| dataset | rows chainlake | rows cryo | chainlake s | cryo s | chainlake rows/s | cryo rows/s | ratio "
        "| requests (chainlake / cryo) | JSON-RPC calls (chainlake / cryo) | peak in flight (chainlake / cryo) "
        "| node CPU s (chainlake / cryo) | proxy CPU s (chainlake / cryo) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['rows_chainlake']:,} | {r['rows_cryo']:,} | {r['chainlake_s']:.3f} | "
                     f"{r['cryo_s']:.3f} | {r['chainlake_rows_s']:,.0f} | {r['cryo_rows_s']:,.0f} | "
                     f"{r['ratio']:.2f}x | {r['requests_chainlake']:,} / {r['requests_cryo']:,} | "
                     f"{r['calls_chainlake']:,} / {r['calls_cryo']:,} | {r['peak_chainlake']} / {r['peak_cryo']} | "
                     f"{r['node_cpu_chainlake']:.2f} / {r['node_cpu_cryo']:.2f} | "
                     f"{r['proxy_cpu_chainlake']:.2f} / {r['proxy_cpu_cryo']:.2f} |")
    heaviest = max(results, key=lambda r: r["proxy_load"])
    busiest = max(results, key=lambda r: r["request_rate"])
    lines += [
        "",
        f"Same chain as the table above, read through a proxy (aiohttp server on uvloop, separate process) that "
        f"holds every HTTP request {proxy['latency_ms']:g} ms, then forwards it to anvil over keep-alive "
        f"connections (pool of up to {proxy['pool']}). Both tools at their default concurrency: chainlake "
        f"`ingest()` defaults (max_concurrency=4 requests in flight, JSON-RPC batches), cryo's defaults "
        f"(max_concurrent_requests=100, max_concurrent_chunks=4, one call per request). Requests and calls "
        f"are counted by the proxy in each tool's best run (including its start-up probes). Best of {repeats} "
        f"alternating runs per tool. {PEAK_NOTE}",
        "",
        f"Proxy headroom: its heaviest load in any run was {heaviest['proxy_load']:.2f} CPU-s per wall-s "
        f"({heaviest['dataset']}), and the busiest run sent {busiest['request_rate']:,.0f} requests/s "
        f"({busiest['dataset']}); at 0 ms it sustained {capacity['requests_s']:,.0f} requests/s with "
        f"{capacity['concurrency']} in flight ({capacity['requests']:,} eth_chainId through to anvil, load "
        f"generator and anvil on the same 2 cores) using only {capacity['cpu_per_wall']:.2f} CPU-s per s "
        f"({capacity['us_per_request']:.0f} µs per request). Not saturated, so not what limits either tool.",
        "",
        "Calls by method (best runs):",
        "",
    ]
    for r in results:
        lines.append(f"- {r['dataset']}: chainlake {methods_text(r['methods_chainlake'])}; "
                     f"cryo {methods_text(r['methods_cryo'])}")
    return "\n".join(lines) + "\n"


def options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def tuned_markdown(results: list[dict], chain: dict, repeats: int) -> str:
    latency = f"{chain['proxy']['latency_ms']:g}"
    lines = [
        f"#### Tuned (not defaults): {results[0]['dataset']} behind the same {latency} ms proxy, other concurrency "
        "settings",
        "",
        "| setting | chainlake options | cryo options | rows (chainlake / cryo) | chainlake s | cryo s "
        "| chainlake rows/s | cryo rows/s | ratio | requests (chainlake / cryo) | peak in flight (chainlake / cryo) "
        "| node CPU s (chainlake / cryo) | proxy CPU s (chainlake / cryo) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['setting']} | {options_text(r['options_chainlake'])} | {options_text(r['options_cryo'])} | "
                     f"{r['rows_chainlake']:,} / {r['rows_cryo']:,} | {r['chainlake_s']:.3f} | {r['cryo_s']:.3f} | "
                     f"{r['chainlake_rows_s']:,.0f} | {r['cryo_rows_s']:,.0f} | {r['ratio']:.2f}x | "
                     f"{r['requests_chainlake']:,} / {r['requests_cryo']:,} | {r['peak_chainlake']} / {r['peak_cryo']} | "
                     f"{r['node_cpu_chainlake']:.2f} / {r['node_cpu_cryo']:.2f} | "
                     f"{r['proxy_cpu_chainlake']:.2f} / {r['proxy_cpu_cryo']:.2f} |")
    heaviest = max(r["proxy_load"] for r in results)
    lines += ["", f"Options not listed are each tool's defaults. Best of {repeats} alternating runs per tool; "
                  f"the proxy's heaviest load in these runs was {heaviest:.2f} CPU-s per wall-s. {PEAK_NOTE}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=2000)
    parser.add_argument("--txs-per-block", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chains", default="signed,unsigned",
                        help="which devnet chains to build: signed (real signatures), unsigned (impersonated)")
    parser.add_argument("--latency-ms", type=float, default=20,
                        help="also read the unsigned chain through a proxy adding this round trip to every HTTP "
                             "request (a remote node); 0 skips it")
    parser.add_argument("--tuned", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the labelled non-default concurrency settings (TUNED) on transactions "
                             "through the proxy")
    parser.add_argument("--no-results", action="store_true", help="do not rewrite bench/RESULTS.md's table")
    args = parser.parse_args()
    if args.latency_ms < 0:
        sys.exit("--latency-ms must be >= 0")
    tables, results = [], []
    for kind in args.chains.split(","):
        if kind not in CHAIN_TITLES:
            sys.exit(f"unknown chain kind {kind!r}: use {', '.join(CHAIN_TITLES)}")
        chain_results, chain = bench(args.blocks, args.txs_per_block, args.repeats, args.seed, kind == "signed",
                                     args.latency_ms, args.tuned)
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
    """One line per dataset (and scenario) where chainlake and cryo wrote different numbers of rows."""
    return [f"{r['dataset']}{'' if r.get('scenario', 'local') == 'local' else ' (' + r['scenario'] + ')'}: chainlake "
            f"{r['rows_chainlake']:,} rows, cryo {r['rows_cryo']:,}"
            for r in results if r["rows_chainlake"] != r["rows_cryo"]]


def write_results(table: str) -> None:
    """Rewrite the ingest section of bench/RESULTS.md (between its markers), keeping the written analysis."""
    write_section("bench", table, "Ingest benchmark", "`make bench` (= `.venv/bin/python bench/ingest.py`).")


if __name__ == "__main__":
    main()
