"""Filling a lake from the session devnet, as it was when a given block was the newest (shared by fixtures)."""

from __future__ import annotations

from chainlake.decode import decode
from chainlake.features import build_features
from chainlake.ingest import ingest
from chainlake.ingest.mempool import MempoolRecorder, build_mempool

RAW = ["blocks", "transactions", "logs"]


def fill_lake(devnet, lake, last_block: int):
    """Ingest, record the txpool as seen up to `last_block`, decode, build every feature view."""
    recorder = MempoolRecorder(lake)
    for snap in devnet.mempool:
        if snap.block_number - 1 <= last_block:  # a snapshot taken while `block_number - 1` was the head
            recorder.observe(snap.txpool_content, snap.block_number - 1, snap.wall_time)
    recorder.flush()
    ingest(devnet.url, f"0:{last_block + 1}", RAW, lake, partition_size=100)
    build_mempool(lake)
    decode(lake, f"0:{last_block + 1}", rpc_url=devnet.url)
    return build_features(lake)
