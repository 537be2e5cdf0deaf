"""The embedded devnet: anvil + a Uniswap-V2-style DEX + a deterministic simulated market.

    with Devnet(seed=7) as dn:          # starts anvil (always stopped on exit) and deploys the DEX
        summary = dn.run(300)           # mines 300 blocks of market activity
        print(dn.url, dn.layout.pools)

`run_devnet(...)` is what the CLI calls: it serves the devnet until `blocks` are mined or Ctrl-C.
"""

from __future__ import annotations

import importlib
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from chainlake.config import DEFAULT_LAYOUT
from chainlake.devnet.rpc import Rpc
from chainlake.devnet.anvil import DEVNET_CHAIN_ID, DEVNET_MNEMONIC, Anvil, dev_account

if TYPE_CHECKING:
    from chainlake.devnet.deploy import DevnetLayout, PoolInfo, TokenInfo
    from chainlake.devnet.market import Market, MarketSummary, Observer, run_market

# Imported on first use (PEP 562): keeps `import chainlake.devnet` light for the CLI, and lets
# `python -m chainlake.devnet.contracts` run without the package importing that module first.
_LAZY = {
    "DevnetLayout": "deploy", "PoolInfo": "deploy", "TokenInfo": "deploy",
    "Market": "market", "MarketSummary": "market", "Observer": "market", "run_market": "market",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"chainlake.devnet.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'chainlake.devnet' has no attribute {name!r}")


__all__ = [
    "Anvil", "DEVNET_CHAIN_ID", "DEVNET_MNEMONIC", "Devnet", "dev_account", "DevnetLayout", "Market", "MarketSummary",
    "Observer", "PoolInfo", "TokenInfo", "run_devnet", "run_market",
]



class Devnet:
    """A running anvil with the DEX deployed and a market ready to mine blocks; a context manager.

    `port=None` picks a free port. `block_time` (seconds) paces `run()` on a wall-clock timer; without it
    blocks are mined as fast as possible. Either way every block's timestamp is 12 s after the previous,
    so a given seed always produces the same chain (same block hashes).

    `signed=False` sends every transaction impersonated (anvil_autoImpersonateAccount): same senders, same
    market, but no signatures. anvil recovers the sender of a signed transaction on every read (~110 µs of
    node CPU per transaction body), which makes any client node-bound; nodes such as geth or reth store
    senders instead, and an unsigned devnet behaves like them. The benchmark measures both.
    """

    def __init__(self, seed: int = 7, port: int | None = None, block_time: float | None = None,
                 txs_per_block: int = 10, signed: bool = True):
        self.seed = seed
        self.signed = signed
        self.block_time = block_time
        self.txs_per_block = txs_per_block
        self.anvil = Anvil(port=port)
        self.layout: DevnetLayout | None = None
        self.market: Market | None = None

    @property
    def url(self) -> str:
        return self.anvil.url

    def start(self) -> "Devnet":
        from chainlake.devnet.deploy import deploy
        from chainlake.devnet.market import Market

        self.anvil.start()
        try:
            if not self.signed:
                with Rpc(self.url) as rpc:
                    rpc.call("anvil_autoImpersonateAccount", True)
            self.layout = deploy(self.url)
            self.market = Market(self.url, self.layout, seed=self.seed, txs_per_block=self.txs_per_block)
        except BaseException:
            self.stop()
            raise
        return self

    def run(
        self,
        blocks: int | None,
        observers: Sequence[Observer] = (),
        truth_path: str | Path | None = None,
        check_receipts: bool = True,
    ) -> MarketSummary:
        """Mine `blocks` blocks of market activity (None: until Ctrl-C); call again to continue the same market."""
        if self.market is None:
            raise RuntimeError("Devnet is not started: use it as a context manager")
        return self.market.run(blocks, observers=observers, block_time=self.block_time,
                               truth_path=truth_path, check_receipts=check_receipts)

    def stop(self) -> None:
        if self.market is not None:
            self.market.close()
            self.market = None
        self.anvil.stop()

    def __enter__(self) -> "Devnet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_devnet(
    port: int | None = None,
    blocks: int | None = None,
    block_time: float | None = None,
    seed: int = 7,
    layout_path: str | Path | None = None,
    txs_per_block: int = 10,
    truth_path: str | Path | None = None,
    keep_serving: bool = False,
) -> MarketSummary | None:
    """Serve a devnet for the CLI: print its URL and layout path, mine until `blocks` or Ctrl-C, then stop anvil.

    With `keep_serving`, the node stays up after the last block (no more market) until Ctrl-C, so the chain
    can be ingested from another terminal.
    """
    layout_path = Path(layout_path) if layout_path is not None else DEFAULT_LAYOUT
    with _sigterm_as_interrupt(), Devnet(seed=seed, port=port, block_time=block_time, txs_per_block=txs_per_block) as dn:
        dn.layout.to_json(layout_path)
        print(f"devnet: {dn.url} (chain id {dn.layout.chain_id})", flush=True)
        print(f"layout: {layout_path}", flush=True)
        pace = f"one block every {block_time:g}s" if block_time else "as fast as possible"
        until = f"{blocks} blocks" if blocks is not None else "Ctrl-C"
        print(f"mining {pace} until {until}, {txs_per_block} txs/block, seed {seed}", flush=True)
        try:
            summary = dn.run(blocks, truth_path=truth_path)
        except KeyboardInterrupt:
            print("interrupted; stopping anvil", file=sys.stderr, flush=True)
            return None
        print(
            f"mined blocks {summary.first_block}..{summary.last_block}: {sum(summary.txs_sent.values())} txs "
            f"({summary.tx_per_s:.0f} tx/s), {summary.sandwiches_landed}/{summary.sandwiches_attempted} sandwiches landed",
            flush=True,
        )
        if keep_serving:
            _serve_until_interrupted(dn.url)
        return summary


def _serve_until_interrupted(url: str) -> None:
    print(f"serving {url} until Ctrl-C", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping anvil", file=sys.stderr, flush=True)


@contextmanager
def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C while serving, so `with Devnet` still stops anvil (default SIGTERM would orphan it).

    SIGINT gets Python's default handler back too: a shell starting us in the background sets it to
    "ignore", and Ctrl-C / `kill -INT` must still stop the devnet cleanly.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
