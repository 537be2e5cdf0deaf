"""Mempool: pending transactions seen in `txpool_content`, then joined to where (and if) they landed.

Two tables:

* `mempool_observations` (raw): what a watcher saw. One row per transaction per flush window, with the
  first and last time (unix ms, the watcher's clock) and chain head at which it was pending, and how
  many polls saw it. Windows are append-only files, so several watchers or restarts never clash.
* `mempool` (derived): one row per transaction hash ever seen pending, joined to the `transactions` and
  `blocks` datasets: inclusion block and position, delay in blocks and seconds, and a status:
  `included`; `replaced` (another tx with the same sender and nonce was included: `replaced_by`);
  `dropped` (not seen any more, its nonce not used by the covered chain); `pending` (still pending at
  the last observation, or the lake does not yet cover blocks after its last sighting).

Only txpool_content is used: `newPendingTransactions` needs a WebSocket subscription, and polling the
pool gives the same first-seen semantics at the poll interval's resolution.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from chainlake.ingest.convert import hex_to_decimal, hex_to_int
from chainlake.ingest.lake import write_parquet_atomic
from chainlake.ingest.schemas import MEMPOOL, MEMPOOL_OBSERVATIONS

OBSERVATIONS = "mempool_observations"
MEMPOOL_TABLE = "mempool"

def _f64(hex_value: str | None) -> float | None:
    return None if hex_value is None else float(hex_to_int(hex_value))


def _row(tx: dict, pool: str, seen_ms: int, head: int) -> dict:
    """Flatten one txpool_content entry; legacy txs have gasPrice, EIP-1559 ones maxFeePerGas."""
    gas_price = tx.get("gasPrice") or tx.get("maxFeePerGas")
    return {
        "transaction_hash": tx["hash"].lower(),
        "from_address": tx["from"].lower(),
        "nonce": hex_to_int(tx["nonce"]),
        "to_address": tx["to"].lower() if tx.get("to") else None,
        "value": hex_to_decimal(tx.get("value")),
        "value_f64": _f64(tx.get("value")),
        "gas_limit": hex_to_int(tx.get("gas")),
        "gas_price": hex_to_int(gas_price),
        "max_fee_per_gas": hex_to_int(tx.get("maxFeePerGas")),
        "max_priority_fee_per_gas": hex_to_int(tx.get("maxPriorityFeePerGas")),
        "transaction_type": hex_to_int(tx.get("type")),
        "input": tx.get("input"),
        "pool": pool,
        "first_seen_ms": seen_ms,
        "last_seen_ms": seen_ms,
        "first_seen_head": head,
        "last_seen_head": head,
        "sightings": 1,
    }


@dataclass
class MempoolRecorder:
    """Accumulates txpool snapshots in memory; `flush` writes one observation window atomically."""

    lake_dir: Path
    seen: dict[str, dict] = field(default_factory=dict)
    snapshots: int = 0

    def observe(self, txpool_content: dict, head_block: int, seen_at: float | None = None) -> int:
        """Record one `txpool_content` answer taken while `head_block` was the chain head.

        Returns how many transactions were pending or queued in it.
        """
        seen_ms = int((time.time() if seen_at is None else seen_at) * 1000)
        count = 0
        for pool in ("pending", "queued"):
            for by_nonce in (txpool_content.get(pool) or {}).values():
                for tx in by_nonce.values():
                    self._merge(_row(tx, pool, seen_ms, head_block))
                    count += 1
        self.snapshots += 1
        return count

    def _merge(self, row: dict) -> None:
        old = self.seen.get(row["transaction_hash"])
        if old is None:
            self.seen[row["transaction_hash"]] = row
            return
        old["last_seen_ms"] = row["last_seen_ms"]
        old["last_seen_head"] = row["last_seen_head"]
        old["pool"] = row["pool"]
        old["sightings"] += 1

    def flush(self) -> Path | None:
        """Write what was seen since the last flush as one Parquet file; None if nothing was seen."""
        if not self.seen:
            return None
        table = pa.Table.from_pylist(list(self.seen.values()), schema=MEMPOOL_OBSERVATIONS)
        table = table.sort_by([("first_seen_ms", "ascending"), ("transaction_hash", "ascending")])
        first = pa.compute.min(table["first_seen_ms"]).as_py()
        last = pa.compute.max(table["last_seen_ms"]).as_py()
        out_dir = self.lake_dir / OBSERVATIONS
        path = out_dir / f"window_{first:013d}_{last:013d}_{os.getpid()}.parquet"
        write_parquet_atomic(path, table)
        self.seen = {}
        return path


def watch(client, lake_dir: Path, seconds: float, interval: float = 0.5,
          flush_every: float = 60.0) -> MempoolRecorder:
    """Poll `txpool_content` of a node every `interval` seconds for `seconds`, flushing windows.

    `client` is a `chainlake.rpc.RpcClient`; the method is probed first so a node without a txpool
    API fails with one clear message before anything is written.
    """
    client.require("txpool_content")
    recorder = MempoolRecorder(lake_dir)
    deadline = time.monotonic() + seconds
    last_flush = time.monotonic()
    try:
        while time.monotonic() < deadline:
            head = int(client.call("eth_blockNumber", []), 16)
            recorder.observe(client.call("txpool_content", []), head)
            if time.monotonic() - last_flush >= flush_every:
                recorder.flush()
                last_flush = time.monotonic()
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
    finally:
        recorder.flush()
    return recorder


MEMPOOL_SQL = """
WITH obs AS (
    SELECT transaction_hash,
           arg_min(from_address, first_seen_ms) AS from_address,
           arg_min(nonce, first_seen_ms) AS nonce,
           arg_min(to_address, first_seen_ms) AS to_address,
           arg_min(value, first_seen_ms) AS value,
           arg_min(value_f64, first_seen_ms) AS value_f64,
           arg_min(gas_limit, first_seen_ms) AS gas_limit,
           arg_min(gas_price, first_seen_ms) AS gas_price,
           arg_min(max_fee_per_gas, first_seen_ms) AS max_fee_per_gas,
           arg_min(max_priority_fee_per_gas, first_seen_ms) AS max_priority_fee_per_gas,
           arg_min(transaction_type, first_seen_ms) AS transaction_type,
           arg_min(input, first_seen_ms) AS input,
           min(first_seen_ms) AS first_seen_ms,
           max(last_seen_ms) AS last_seen_ms,
           min(first_seen_head) AS first_seen_head,
           max(last_seen_head) AS last_seen_head,
           sum(sightings)::BIGINT AS sightings
    FROM observations GROUP BY transaction_hash
),
latest AS (SELECT max(last_seen_ms) AS ms FROM observations),
covered AS (SELECT coalesce(max(block_number), -1) AS head FROM blocks)
SELECT o.*,
       t.block_number AS included_block,
       t.transaction_index AS included_index,
       CASE WHEN t.block_number IS NOT NULL THEN t.block_number - o.first_seen_head END AS delay_blocks,
       CASE WHEN t.block_number IS NOT NULL
            THEN b.timestamp - o.first_seen_ms / 1000.0 END AS delay_seconds,
       r.transaction_hash AS replaced_by,
       CASE
           WHEN t.block_number IS NOT NULL THEN 'included'
           WHEN r.transaction_hash IS NOT NULL THEN 'replaced'
           WHEN o.last_seen_ms < (SELECT ms FROM latest)
                AND o.last_seen_head < (SELECT head FROM covered) THEN 'dropped'
           ELSE 'pending'
       END AS status
FROM obs o
LEFT JOIN txs t ON t.transaction_hash = o.transaction_hash
LEFT JOIN blocks b ON b.block_number = t.block_number
LEFT JOIN txs r ON t.transaction_hash IS NULL AND r.from_address = o.from_address
                 AND r.nonce = o.nonce AND r.transaction_hash <> o.transaction_hash
ORDER BY o.first_seen_ms, o.transaction_hash
"""


def build_mempool(lake_dir: Path) -> pa.Table:
    """Rebuild the derived `mempool` table from all observations and the ingested chain data.

    Runs in DuckDB over the lake's Parquet files and replaces `LAKE/mempool/data.parquet` atomically.
    No observations yet (a quiet node, a first run) gives an empty table, not an error, so a scheduled
    rebuild never fails for lack of traffic.
    """
    if any((lake_dir / OBSERVATIONS).glob("*.parquet")):
        table = _join_observations(lake_dir)
    else:
        table = MEMPOOL.empty_table()
    write_parquet_atomic(lake_dir / MEMPOOL_TABLE / "data.parquet", table)
    return table


def _join_observations(lake_dir: Path) -> pa.Table:
    obs_glob = lake_dir / OBSERVATIONS / "*.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW observations AS SELECT * FROM read_parquet('{obs_glob.as_posix()}')")
        _chain_view(con, lake_dir, "transactions", "txs",
                    "transaction_hash, from_address, nonce, block_number, transaction_index")
        _chain_view(con, lake_dir, "blocks", "blocks", "block_number, timestamp")
        return con.sql(MEMPOOL_SQL).to_arrow_table().cast(MEMPOOL)
    finally:
        con.close()


def _chain_view(con, lake_dir: Path, dataset: str, view: str, columns: str) -> None:
    """A view over an ingested dataset, or an empty one of the same shape if nothing is ingested yet."""
    files = list((lake_dir / dataset).rglob("*.parquet"))
    if files:
        glob = (lake_dir / dataset / "**" / "*.parquet").as_posix()
        con.execute(f"CREATE VIEW {view} AS SELECT {columns} FROM read_parquet('{glob}', hive_partitioning = true)")
    elif dataset == "transactions":
        con.execute(f"CREATE VIEW {view} AS SELECT NULL::VARCHAR AS transaction_hash, NULL::VARCHAR AS from_address,"
                    " NULL::BIGINT AS nonce, NULL::BIGINT AS block_number, NULL::BIGINT AS transaction_index WHERE false")
    else:
        con.execute(f"CREATE VIEW {view} AS SELECT NULL::BIGINT AS block_number, NULL::BIGINT AS timestamp WHERE false")
