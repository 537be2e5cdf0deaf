"""The Dagster UI serves this code location: what `make dev` shows, checked over its GraphQL API."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from chainlake.devnet.anvil import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_webserver_lists_partitioned_raw_assets(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    webserver = Path(sys.executable).parent / "dagster-webserver"
    proc = subprocess.Popen(
        [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-m", "dagster_project.definitions"],
        cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        query = "{ assetNodes { assetKey { path } isPartitioned hasAssetChecks } }"
        nodes = httpx.post(f"{url}/graphql", json={"query": query}, timeout=60).json()["data"]["assetNodes"]
        by_name = {n["assetKey"]["path"][0]: n for n in nodes}
        for name in ("blocks", "transactions", "logs", "traces", "balances"):
            assert by_name[name]["isPartitioned"] and by_name[name]["hasAssetChecks"]
        assert {"mempool", "mempool_observations", "lake_catalog"} <= set(by_name)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
