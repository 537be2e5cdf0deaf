"""Fund any account on the devnet: ERC-20s minted by the deployer, WETH wrapped by the deployer and sent
over, ETH for gas, and the router approved for every funded token (so a live trader starts ready).

The transactions only enter the mempool: the devnet's market mines them with its next block (mining here
would move the chain under the market, whose clock and head are its own). `mine=True` mines one block at
once, for a node without a running market. `confirm` checks afterwards that every one succeeded.

The approvals are sent as the funded account itself through `anvil_impersonateAccount`, so the account
needs no key here (dev accounts and arbitrary addresses alike).
"""

from __future__ import annotations

from collections.abc import Mapping

from chainlake.devnet.deploy import MAX_UINT, DevnetLayout
from chainlake.devnet.rpc import Rpc, encode_call
from chainlake.devnet.sender import GAS, GWEI
from chainlake.errors import ConfigError, NodeError

FEE_CAP = 100 * GWEI


def fund(url: str, layout: DevnetLayout, address: str, amounts: Mapping[str, float], eth: float = 0.0,
         mine: bool = False) -> list[str]:
    """Give `address` `amounts` (symbol -> whole units) and `eth` ETH; approve the router; return the tx hashes."""
    unknown = sorted(set(amounts) - set(layout.tokens))
    if unknown:
        raise ConfigError(f"faucet: unknown token(s) {', '.join(unknown)}; the devnet has {', '.join(layout.tokens)}")
    address = address.lower()
    with Rpc(url) as rpc:
        deployer = _Account(rpc, layout.deployer)
        hashes = [deployer.send(address, value=int(eth * 10**18))] if eth else []
        for symbol, amount in amounts.items():
            token = layout.tokens[symbol]
            units = int(round(amount * 10**token.decimals))
            if symbol == "WETH":
                hashes.append(deployer.send(token.address, encode_call("deposit()"), value=units, gas=GAS["deposit"]))
                hashes.append(deployer.send(token.address, encode_call("transfer(address,uint256)", address, units)))
            else:
                hashes.append(deployer.send(token.address, encode_call("mint(address,uint256)", address, units),
                                            gas=GAS["mint"]))
        hashes += _approve_router(rpc, layout, address, [layout.tokens[s].address for s in amounts])
        if mine:
            rpc.call("evm_mine")
            confirm(url, hashes)
    return hashes


def _approve_router(rpc: Rpc, layout: DevnetLayout, address: str, tokens: list[str]) -> list[str]:
    rpc.call("anvil_impersonateAccount", address)
    try:
        owner = _Account(rpc, address)
        return [owner.send(t, encode_call("approve(address,uint256)", layout.router, MAX_UINT), gas=GAS["approve"])
                for t in tokens]
    finally:
        rpc.call("anvil_stopImpersonatingAccount", address)


def confirm(url: str, hashes: list[str]) -> None:
    """Insist every faucet transaction is mined and succeeded (call after the block that holds them)."""
    with Rpc(url) as rpc:
        receipts = rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    failed = [h for h, r in zip(hashes, receipts) if r is None or r["status"] != "0x1"]
    if failed:
        raise NodeError(f"faucet: {len(failed)} of {len(hashes)} transactions not mined or failed, first {failed[0]}")


class _Account:
    """Sends from an unlocked (or impersonated) account with local nonces starting at its pending nonce."""

    def __init__(self, rpc: Rpc, address: str):
        self.rpc, self.address = rpc, address
        self.nonce = int(rpc.call("eth_getTransactionCount", address, "pending"), 16)

    def send(self, to: str, data: str = "0x", value: int = 0, gas: int = 100_000) -> str:
        tx = {"from": self.address, "to": to, "data": data, "value": hex(value), "gas": hex(gas),
              "nonce": hex(self.nonce), "maxFeePerGas": hex(FEE_CAP + GWEI), "maxPriorityFeePerGas": hex(GWEI)}
        tx_hash = self.rpc.call("eth_sendTransaction", tx)
        self.nonce += 1
        return tx_hash
