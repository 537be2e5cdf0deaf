"""Which tokens are worth one US dollar, per chain: what `dex_swaps.amount_usd` is priced with.

A swap with a USD stablecoin on one side has an exact dollar size: that side's amount (Dune's
`dex.trades.amount_usd` uses the same leg when it has a price). Other swaps get null, not a guess: pricing
a WETH/LINK trade needs a price feed, which belongs in a feature view, not in a decoded table.

On mainnet the stablecoins are known by address (a token merely *named* USDC is anyone's deployment).
On the devnet (chain 31337) the tokens are this project's own deployment, so their symbols can be trusted.
"""

from __future__ import annotations

from collections.abc import Iterable

USD_STABLECOINS: dict[int, frozenset[str]] = {
    1: frozenset({
        "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",  # USDC
        "0xdac17f958d2ee523a2206206994597c13d831ec7",  # USDT
        "0x6b175474e89094c44da98b954eedeac495271d0f",  # DAI
        "0x853d955acef822db058eb8505911ed77f175b99e",  # FRAX
        "0x5f98805a4e8be255a32880fdec7f6728c6568ba0",  # LUSD
        "0x6c3ea9036406852006290770bedfcaba0e23a0e8",  # PYUSD
    }),
}
DEVNET_CHAIN_ID = 31337
USD_SYMBOLS = frozenset({"USDC", "USDT", "DAI"})  # the devnet's (chainlake.devnet.deploy)


def usd_tokens(chain_id: int | None, tokens: Iterable[tuple[str, str | None]]) -> frozenset[str]:
    """The addresses among `tokens` ((address, symbol) pairs) that count as one USD on `chain_id`."""
    if chain_id == DEVNET_CHAIN_ID:
        return frozenset(address for address, symbol in tokens if (symbol or "").upper() in USD_SYMBOLS)
    return frozenset(address for address, _ in tokens if address in USD_STABLECOINS.get(chain_id, ()))
