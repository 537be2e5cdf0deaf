"""Deploy the devnet DEX (tokens, factory, router, pools), fund the agents, and describe it in a DevnetLayout.

Everything is sent from anvil's dev accounts with explicit nonces and mined in explicit blocks 12 s apart,
so the same node start gives the same addresses and the same block hashes every time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from chainlake.devnet.contracts import load
from chainlake.devnet.rpc import Rpc, decode_result, encode_call
from chainlake.devnet.sender import GAS, Sender, Tx, block_receipts, latest_block, mine
from chainlake.errors import NodeError

BLOCK_INTERVAL = 12
MAX_UINT = 2**256 - 1
WAD = 10**18

# symbol -> (name, decimals, reference USD price at genesis); WETH first, it is not an ERC20.vy token.
TOKENS: dict[str, tuple[str, int, float]] = {
    "WETH": ("Wrapped Ether", 18, 3000.0),
    "USDC": ("USD Coin", 6, 1.0),
    "DAI": ("Dai Stablecoin", 18, 1.0),
    "LINK": ("ChainLink Token", 18, 15.0),
}
# pool name "BASE/QUOTE" -> (base units, quote units) of initial liquidity, at the genesis prices above.
POOLS: dict[str, tuple[float, float]] = {
    "WETH/USDC": (2_000, 6_000_000),
    "WETH/DAI": (1_000, 3_000_000),
    "LINK/WETH": (200_000, 1_000),
    "DAI/USDC": (2_000_000, 2_000_000),
}
# role -> (how many agents, token balances in whole units); agents are dev accounts 1.. in this order.
ROLES: dict[str, tuple[int, dict[str, float]]] = {
    "noise": (10, {"WETH": 2_000, "USDC": 6e6, "DAI": 6e6, "LINK": 4e5}),
    "arb": (3, {"WETH": 20_000, "USDC": 6e7, "DAI": 6e7, "LINK": 4e6}),
    "lp": (3, {"WETH": 5_000, "USDC": 1.5e7, "DAI": 1.5e7, "LINK": 1e6}),
    "sandwich": (1, {"WETH": 5_000, "USDC": 1.5e7, "DAI": 1.5e7, "LINK": 1e6}),
    "retail": (6, {"WETH": 10, "USDC": 2e4, "DAI": 2e4, "LINK": 1e3}),
}
DEPLOYER_WETH = 5_000


@dataclass
class TokenInfo:
    address: str
    decimals: int


@dataclass
class PoolInfo:
    """A pair; `base`/`quote` are symbols of the canonical name, token0/token1 the on-chain (sorted) order."""

    address: str
    token0: str
    token1: str
    base: str
    quote: str


@dataclass
class DevnetLayout:
    """Where everything lives on the devnet; addresses are lowercase 0x hex."""

    chain_id: int
    url: str
    tokens: dict[str, TokenInfo]
    pools: dict[str, PoolInfo]
    router: str
    factory: str
    agents: dict[str, str]
    deployer: str
    deploy_block: int
    genesis_prices_usd: dict[str, float] = field(default_factory=dict)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "DevnetLayout":
        data = orjson.loads(Path(path).read_bytes())
        data["tokens"] = {k: TokenInfo(**v) for k, v in data["tokens"].items()}
        data["pools"] = {k: PoolInfo(**v) for k, v in data["pools"].items()}
        return cls(**data)

    def agents_of(self, role: str) -> list[str]:
        """Addresses of one role ('noise', 'arb', 'lp', 'sandwich', 'retail'), in index order."""
        return [a for name, a in self.agents.items() if name.rsplit("_", 1)[0] == role]

    def symbol_of(self, address: str) -> str:
        address = address.lower()
        for symbol, info in self.tokens.items():
            if info.address == address:
                return symbol
        raise KeyError(address)


class _Deployer:
    """Deployment steps sharing one RPC connection, nonce book and block clock."""

    def __init__(self, rpc: Rpc):
        self.rpc = rpc
        self.sender = Sender(rpc)
        self.accounts = [a.lower() for a in rpc.call("eth_accounts")]
        self.deployer = self.accounts[0]
        self.first_block = int(latest_block(rpc)["number"], 16) + 1

    def mine_checked(self, txs: list[Tx]) -> list[dict]:
        """Send txs, mine one block 12 s after the last, and insist every tx succeeded."""
        hashes = self.sender.send(txs)
        head = latest_block(self.rpc)
        mine(self.rpc, int(head["timestamp"], 16) + BLOCK_INTERVAL)
        number = int(head["number"], 16) + 1
        receipts = {r["transactionHash"]: r for r in block_receipts(self.rpc, number, number)}
        for tx, h in zip(txs, hashes):
            receipt = receipts.get(h)
            if receipt is None or receipt["status"] != "0x1":
                raise NodeError(f"deployment tx {tx.kind} did not succeed: {receipt and receipt['status']}")
        return [receipts[h] for h in hashes]

    def deploy_tx(self, artifact_code: str, ctor_types: list[str] = (), ctor_args: list = ()) -> Tx:
        from eth_abi import encode

        data = artifact_code + (encode(list(ctor_types), list(ctor_args)).hex() if ctor_types else "")
        return Tx(self.deployer, None, data=data, gas=GAS["deploy"], kind="deploy")

    def call(self, to: str, signature: str, out_types: list[str], *args) -> tuple:
        raw = self.rpc.call("eth_call", {"to": to, "data": encode_call(signature, *args)}, "latest")
        return decode_result(out_types, raw)


def _agent_names() -> list[str]:
    return [f"{role}_{i}" for role, (count, _) in ROLES.items() for i in range(count)]


def deploy(url: str) -> DevnetLayout:
    """Deploy the whole DEX on a fresh manual-mining anvil and return its layout (takes ~6 blocks)."""
    with Rpc(url) as rpc:
        d = _Deployer(rpc)
        chain_id = int(rpc.call("eth_chainId"), 16)
        names = _agent_names()
        if len(d.accounts) < len(names) + 1:
            raise NodeError(f"anvil needs at least {len(names) + 1} dev accounts, has {len(d.accounts)}")
        agents = dict(zip(names, d.accounts[1 : len(names) + 1]))
        tokens = _deploy_tokens(d)
        factory, router = _deploy_dex(d, tokens["WETH"].address)
        _fund_agents(d, tokens, agents, router)
        pools = _create_pools(d, tokens, factory, router, agents)
        return DevnetLayout(
            chain_id=chain_id, url=url, tokens=tokens, pools=pools, router=router, factory=factory,
            agents=agents, deployer=d.deployer, deploy_block=int(latest_block(rpc)["number"], 16),
            genesis_prices_usd={s: p for s, (_, _, p) in TOKENS.items()},
        )


def _deploy_tokens(d: _Deployer) -> dict[str, TokenInfo]:
    erc20, weth = load("ERC20"), load("WETH")
    txs = [d.deploy_tx(weth.bytecode)]
    for symbol, (name, decimals, _) in list(TOKENS.items())[1:]:
        txs.append(d.deploy_tx(erc20.bytecode, ["string", "string", "uint8"], [name, symbol, decimals]))
    receipts = d.mine_checked(txs)
    return {
        symbol: TokenInfo(r["contractAddress"].lower(), TOKENS[symbol][1])
        for symbol, r in zip(TOKENS, receipts)
    }


def _deploy_dex(d: _Deployer, weth: str) -> tuple[str, str]:
    """Pair blueprint, then the factory that stamps pairs from it, then the router."""
    (blueprint_receipt,) = d.mine_checked([d.deploy_tx(load("Pair").blueprint_bytecode)])
    blueprint = blueprint_receipt["contractAddress"].lower()
    (factory_receipt,) = d.mine_checked([d.deploy_tx(load("Factory").bytecode, ["address", "address"], [blueprint, d.deployer])])
    factory = factory_receipt["contractAddress"].lower()
    (router_receipt,) = d.mine_checked([d.deploy_tx(load("Router").bytecode, ["address", "address"], [factory, weth])])
    return factory, router_receipt["contractAddress"].lower()


def _units(symbol: str, amount: float) -> int:
    return int(round(amount * 10 ** TOKENS[symbol][1]))


def _fund_agents(d: _Deployer, tokens: dict[str, TokenInfo], agents: dict[str, str], router: str) -> None:
    """Faucet: mint ERC-20s, wrap ETH into WETH, and approve the router for every token, for all agents."""
    funding = [(d.deployer, {s: 0 for s in TOKENS} | {"WETH": DEPLOYER_WETH, **{s: 1e8 for s in ("USDC", "DAI", "LINK")}})]
    funding += [(addr, ROLES[name.rsplit("_", 1)[0]][1]) for name, addr in agents.items()]
    txs = []
    for addr, balances in funding:
        for symbol, amount in balances.items():
            token = tokens[symbol].address
            if symbol == "WETH":
                txs.append(Tx(addr, token, encode_call("deposit()"), value=_units(symbol, amount), gas=GAS["deposit"], kind="fund"))
            else:
                txs.append(Tx(d.deployer, token, encode_call("mint(address,uint256)", addr, _units(symbol, amount)), gas=GAS["mint"], kind="fund"))
            txs.append(Tx(addr, token, encode_call("approve(address,uint256)", router, MAX_UINT), gas=GAS["approve"], kind="fund"))
    d.mine_checked(txs)


def _create_pools(d: _Deployer, tokens: dict[str, TokenInfo], factory: str, router: str, agents: dict[str, str]) -> dict[str, PoolInfo]:
    """Create pairs, seed them with liquidity at genesis prices, and let LPs approve the router for LP tokens."""
    txs = [
        Tx(d.deployer, factory, encode_call("createPair(address,address)", tokens[b].address, tokens[q].address), gas=GAS["create_pair"], kind="deploy")
        for b, q in (name.split("/") for name in POOLS)
    ]
    d.mine_checked(txs)
    pools: dict[str, PoolInfo] = {}
    for name in POOLS:
        base, quote = name.split("/")
        (pair,) = d.call(factory, "getPair(address,address)", ["address"], tokens[base].address, tokens[quote].address)
        t0, t1 = sorted([tokens[base].address, tokens[quote].address], key=lambda a: int(a, 16))
        pools[name] = PoolInfo(pair.lower(), t0, t1, base, quote)
    deadline = 2**40
    txs = []
    for name, (base_amount, quote_amount) in POOLS.items():
        base, quote = name.split("/")
        args = (tokens[base].address, tokens[quote].address, _units(base, base_amount), _units(quote, quote_amount), 0, 0, d.deployer, deadline)
        txs.append(Tx(d.deployer, router, encode_call("addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)", *args), gas=GAS["add_liquidity"], kind="deploy"))
        for addr in [d.deployer, *agents.values()]:
            txs.append(Tx(addr, pools[name].address, encode_call("approve(address,uint256)", router, MAX_UINT), gas=GAS["approve"], kind="fund"))
    d.mine_checked(txs)
    return pools
