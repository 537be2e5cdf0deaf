"""Send transactions from anvil's unlocked dev accounts with locally assigned nonces, and mine explicitly.

Anvil signs `eth_sendTransaction` for its dev accounts. Letting it pick nonces makes several transactions of
one sender in one batch collide ("replacement transaction underpriced"), so nonces are tracked here. Every
transaction carries an explicit gas limit: without one anvil estimates gas and refuses txs that would revert,
whereas a real chain mines them as failed.

Fees: anvil 1.7.1 orders its block by `maxFeePerGas` (not the effective tip; measured), ties first-come.
We always set maxFeePerGas = FEE_CAP + tip, so ordering by max fee equals ordering by priority fee, as on
mainnet, and sandwich ordering works under both rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from chainlake.devnet.rpc import Rpc, RpcError
from chainlake.errors import NodeError

GWEI = 10**9
FEE_CAP = 100 * GWEI
DEFAULT_TIP = 1 * GWEI

GAS = {
    "transfer": 21_000,
    "approve": 60_000,
    "mint": 80_000,
    "deposit": 60_000,
    "withdraw": 60_000,
    "swap": 300_000,
    "add_liquidity": 350_000,
    "remove_liquidity": 300_000,
    "create_pair": 3_000_000,
    "deploy": 8_000_000,
}


@dataclass
class Tx:
    """A transaction to send: `kind` labels it for the market's success accounting."""

    sender: str
    to: str | None
    data: str = "0x"
    value: int = 0
    gas: int = 300_000
    tip: int = DEFAULT_TIP
    kind: str = "other"
    nonce: int = -1
    max_fee: int | None = None  # default FEE_CAP + tip; the sandwich bot sets it relative to its victim
    hash: str | None = None

    def fee_cap(self) -> int:
        """maxFeePerGas: what anvil orders its blocks by."""
        return self.max_fee if self.max_fee is not None else FEE_CAP + self.tip

    def to_rpc(self) -> dict:
        tx = {
            "from": self.sender,
            "data": self.data,
            "value": hex(self.value),
            "gas": hex(self.gas),
            "nonce": hex(self.nonce),
            "maxFeePerGas": hex(self.fee_cap()),
            "maxPriorityFeePerGas": hex(self.tip),
        }
        if self.to is not None:
            tx["to"] = self.to
        return tx


class Sender:
    """Assigns nonces per dev account and sends batches of eth_sendTransaction."""

    def __init__(self, rpc: Rpc):
        self.rpc = rpc
        self.nonces: dict[str, int] = {}

    def sync_nonces(self, accounts: Iterable[str]) -> None:
        """Read the pending nonce of each account from the node (once at start, or after a resume)."""
        accounts = [a.lower() for a in accounts]
        counts = self.rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in accounts])
        self.nonces.update({a: int(c, 16) for a, c in zip(accounts, counts)})

    def assign(self, tx: Tx) -> Tx:
        sender = tx.sender.lower()
        if sender not in self.nonces:
            self.sync_nonces([sender])
        tx.nonce = self.nonces[sender]
        self.nonces[sender] += 1
        return tx

    def send(self, txs: list[Tx]) -> list[str]:
        """Assign nonces and send all txs in one batch; return their hashes (input order). Rejections are fatal.

        Nonces go to the highest fee first: anvil 1.7.1 silently drops a tx whose fee is higher than the fee
        of its sender's previous pending nonce when both are mined in one block (measured), which leaves a
        nonce gap that strands every later tx of that sender. Sending in fee order also makes arrival order
        match block order.
        """
        order = sorted(range(len(txs)), key=lambda i: -txs[i].fee_cap())
        for i in order:
            if txs[i].nonce < 0:
                self.assign(txs[i])
        results = self.rpc.batch([("eth_sendTransaction", [txs[i].to_rpc()]) for i in order], allow_errors=True)
        hashes: list = [None] * len(txs)
        for i, result in zip(order, results):
            hashes[i] = result
        errors = [(tx, h) for tx, h in zip(txs, hashes) if isinstance(h, RpcError)]
        if errors:
            tx, err = errors[0]
            raise NodeError(f"{len(errors)} of {len(txs)} transactions rejected, first ({tx.kind} from {tx.sender}): {err}")
        return hashes


def mine(rpc: Rpc, timestamp: int) -> None:
    """Mine one block holding the whole mempool, at an explicit timestamp (deterministic block hashes)."""
    rpc.call("evm_mine", timestamp)


def latest_block(rpc: Rpc) -> dict:
    return rpc.call("eth_getBlockByNumber", "latest", False)


def block_receipts(rpc: Rpc, first: int, last: int, chunk: int = 200) -> list[dict]:
    """All receipts of blocks first..last (inclusive), fetched with batched eth_getBlockReceipts."""
    receipts: list[dict] = []
    for start in range(first, last + 1, chunk):
        stop = min(last, start + chunk - 1)
        calls = [("eth_getBlockReceipts", [hex(n)]) for n in range(start, stop + 1)]
        for block in rpc.batch(calls):
            receipts.extend(block or [])
    return receipts
