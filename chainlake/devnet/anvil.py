"""Start and stop a local anvil node (Foundry) that the project installed itself.

`make setup` installs the pinned npm package `@foundry-rs/anvil-linux-amd64` under `.tools/anvil`.
`Anvil` binds 127.0.0.1 on a free port, waits until the node answers, and always stops the process
it started (also on errors and KeyboardInterrupt), so tests and the demo never leak nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chainlake.errors import ConfigError, NodeError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_ANVIL = PROJECT_ROOT / ".tools" / "anvil" / "node_modules" / ".bin" / "anvil"
DEVNET_CHAIN_ID = 31337
# The default anvil mnemonic; agents derive their keys from it by index (deterministic, devnet only).
DEVNET_MNEMONIC = "test test test test test test test test test test test junk"


def anvil_binary() -> Path:
    """Locate anvil: $CHAINLAKE_ANVIL, the project-local install, then PATH."""
    candidates = [os.environ.get("CHAINLAKE_ANVIL"), str(LOCAL_ANVIL), shutil.which("anvil")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise ConfigError("anvil is not installed: run `make setup` (installs @foundry-rs/anvil-linux-amd64 into .tools/)")


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Anvil:
    """A running anvil process; use as a context manager.

    `mining="manual"` starts with `--no-mining`: transactions wait in the mempool until someone calls
    `evm_mine`, which is what the market simulator needs for a real mempool between blocks.
    `block_time` (seconds) turns on interval mining instead.
    """

    port: int | None = None
    accounts: int = 40
    balance_eth: int = 1_000_000
    block_time: float | None = None
    mining: str = "manual"
    genesis_timestamp: int | None = 1_700_000_000
    gas_limit: int = 60_000_000
    chain_id: int = DEVNET_CHAIN_ID  # another id makes a node that live trading must refuse without a flag
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)
    log_path: Path | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [
            str(anvil_binary()),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_eth),
            "--mnemonic", DEVNET_MNEMONIC,
            "--chain-id", str(self.chain_id),
            "--gas-limit", str(self.gas_limit),
        ]
        if self.genesis_timestamp is not None:
            args += ["--timestamp", str(self.genesis_timestamp)]
        if self.block_time is not None:
            args += ["--block-time", str(self.block_time)]
        elif self.mining == "manual":
            args += ["--no-mining"]
        return args + list(self.extra_args)

    def start(self, timeout: float = 20.0) -> "Anvil":
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            # Otherwise the readiness probe would be answered by whatever already listens there.
            raise ConfigError(f"port {self.port} on 127.0.0.1 is already in use: pick another --port or none")
        fd, log = tempfile.mkstemp(prefix="anvil-", suffix=".log")
        self.log_path = Path(log)
        # Default signal handlers in the child, so SIGTERM stops it even if our shell ignored them.
        # Its own session: a terminal Ctrl-C reaches only us, and we stop anvil after our cleanup
        # (otherwise anvil dies first and the final receipts/summary calls fail).
        self.process = subprocess.Popen(
            self.command(), stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_reset_signals, start_new_session=True,
        )
        os.close(fd)
        try:
            self._wait_ready(timeout)
        except BaseException:  # also Ctrl-C while waiting: anvil is in its own session, stop it ourselves
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NodeError(f"anvil exited with code {self.process.returncode}: {self._log_tail()}")
            try:
                r = httpx.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
                if r.status_code == 200 and self.process.poll() is None:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise NodeError(f"anvil did not answer on {self.url} within {timeout:.0f}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-500:]
        return ""

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "Anvil":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _reset_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def dev_account(index: int) -> tuple[str, str]:
    """(lowercase address, 0x private key) of anvil dev account `index`, derived from DEVNET_MNEMONIC.

    The market sends through anvil's unlocked accounts; this is for code that must sign itself
    (eth_sendRawTransaction, off-chain signatures). BIP-44 path m/44'/60'/0'/0/index, as anvil uses.
    """
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(DEVNET_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return account.address.lower(), account.key.to_0x_hex()
