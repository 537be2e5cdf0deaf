"""The Vyper contracts: ABI identical to Uniswap V2 / ERC-20 / WETH9 on mainnet, and Uniswap V2's math.

The topic and selector constants below are the mainnet values (they were re-derived with keccak when
written); the tests derive the same hashes from the compiled ABI, so an event or function that drifts from
Uniswap's signature fails here. The math checks run on a freshly deployed DEX on a real anvil.
"""

from __future__ import annotations

import math

import pytest
from eth_utils import keccak

from chainlake.devnet import Anvil
from chainlake.devnet.deploy import deploy  # the submodule `chainlake.devnet.deploy` shadows a package-level name
from chainlake.devnet.amm import arb_trade, best_sandwich, get_amount_in, get_amount_out, simulate_sandwich
from chainlake.devnet.contracts import BUILD_DIR, compile_all, load, sources
from chainlake.devnet.rpc import Rpc, decode_result, encode_call, event_topic
from chainlake.devnet.sender import GAS, Sender, Tx, block_receipts, latest_block, mine

MAINNET_TOPICS = {
    ("Pair", "Swap"): "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822",
    ("Pair", "Sync"): "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1",
    ("Pair", "Mint"): "0x4c209b5fc8ad50758f13e2e1088ba56a560dff690a1c6fef26394f4c03821c4f",
    ("Pair", "Burn"): "0xdccd412f0b1252819cb1fd330b93224ca42612892bb3f4f789976e6d81936496",
    ("Pair", "Transfer"): "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    ("Pair", "Approval"): "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
    ("ERC20", "Transfer"): "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    ("ERC20", "Approval"): "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
    ("WETH", "Transfer"): "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    ("WETH", "Deposit"): "0xe1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c",
    ("WETH", "Withdrawal"): "0x7fcf532c15f0a6db0bd6d0e038bea71d30d808c7d98cb3bf7268a95bf5081b65",
    ("Factory", "PairCreated"): "0x0d3648bd0f6ba80134a33ba9275ac585d9d315f0ad8355cddefde31afa28d0e9",
}
# UniswapV2Router02 / UniswapV2Pair selectors on mainnet.
MAINNET_SELECTORS = {
    ("Router", "swapExactTokensForTokens"): "38ed1739",
    ("Router", "swapTokensForExactTokens"): "8803dbee",
    ("Router", "swapExactETHForTokens"): "7ff36ab5",
    ("Router", "swapExactTokensForETH"): "18cbafe5",
    ("Router", "addLiquidity"): "e8e33700",
    ("Router", "removeLiquidity"): "baa2abde",
    ("Router", "getAmountsOut"): "d06ca61f",
    ("Pair", "swap"): "022c0d9f",
    ("Pair", "getReserves"): "0902f1ac",
    ("Pair", "mint"): "6a627842",
    ("Pair", "burn"): "89afcb44",
    ("Pair", "sync"): "fff6cae9",
    ("Pair", "skim"): "bc25cf77",
}
INDEXED = {  # which event arguments are topics on mainnet (they change the log layout, not topic0)
    "Swap": [True, False, False, False, False, True],
    "Burn": [True, False, False, True],
    "Mint": [True, False, False],
    "Sync": [False, False],
    "Transfer": [True, True, False],
    "Approval": [True, True, False],
    "Deposit": [True, False],
    "Withdrawal": [True, False],
    "PairCreated": [True, True, False, False],
}


def _signature(item: dict) -> str:
    return f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"


def test_compile_all_is_incremental():
    compile_all()
    assert compile_all() == []
    assert {p.stem for p in BUILD_DIR.glob("*.json")} >= set(sources())
    pair = load("Pair")
    assert pair.bytecode.startswith("0x") and "fe7100" in pair.blueprint_bytecode[:40]  # ERC-5202 preamble


def test_mainnet_topic_hashes_are_what_keccak_says():
    assert event_topic("Swap(address,uint256,uint256,uint256,uint256,address)") == MAINNET_TOPICS[("Pair", "Swap")]
    assert "0x" + keccak(text="Sync(uint112,uint112)").hex() == MAINNET_TOPICS[("Pair", "Sync")]


@pytest.mark.parametrize(("contract", "event"), sorted(MAINNET_TOPICS))
def test_event_abi_matches_mainnet(contract, event):
    item = load(contract).event_abi(event)
    assert event_topic(_signature(item)) == MAINNET_TOPICS[(contract, event)]
    assert [i["indexed"] for i in item["inputs"]] == INDEXED[event]


@pytest.mark.parametrize(("contract", "function"), sorted(MAINNET_SELECTORS))
def test_function_selectors_match_uniswap(contract, function):
    items = [i for i in load(contract).abi if i.get("type") == "function" and i["name"] == function]
    assert len(items) == 1
    assert keccak(text=_signature(items[0]))[:4].hex() == MAINNET_SELECTORS[(contract, function)]


# ---------------------------------------------------------------------------- on a live node


class Dex:
    """A freshly deployed DEX plus helpers to transact and read state."""

    def __init__(self, url: str):
        self.rpc = Rpc(url)
        self.layout = deploy(url)
        self.sender = Sender(self.rpc)
        self.me = self.layout.agents["noise_0"]

    def call(self, to: str, signature: str, out: list[str], *args):
        return decode_result(out, self.rpc.call("eth_call", {"to": to, "data": encode_call(signature, *args)}, "latest"))

    def transact(self, to: str, data: str, value: int = 0) -> dict:
        (h,) = self.sender.send([Tx(self.me, to, data, value=value, gas=GAS["add_liquidity"])])
        head = latest_block(self.rpc)
        mine(self.rpc, int(head["timestamp"], 16) + 12)
        number = int(head["number"], 16) + 1
        (receipt,) = [r for r in block_receipts(self.rpc, number, number) if r["transactionHash"] == h]
        assert receipt["status"] == "0x1"
        return receipt

    def reserves(self, pool: str) -> tuple[int, int]:
        r0, r1, _ = self.call(self.layout.pools[pool].address, "getReserves()", ["uint112", "uint112", "uint32"])
        return r0, r1


@pytest.fixture(scope="module")
def dex():
    with Anvil() as node:
        dex = Dex(node.url)
        yield dex
        dex.rpc.close()


def _logs(receipt: dict, topic: str) -> list[dict]:
    return [log for log in receipt["logs"] if log["topics"][0] == topic]


def test_get_amount_out_matches_hand_computation(dex):
    pool = dex.layout.pools["WETH/USDC"]
    weth, usdc = dex.layout.tokens["WETH"].address, dex.layout.tokens["USDC"].address
    r0, r1 = dex.reserves("WETH/USDC")
    r_weth, r_usdc = (r0, r1) if pool.token0 == weth else (r1, r0)
    amount_in = 10**18  # 1 WETH
    by_hand = amount_in * 997 * r_usdc // (r_weth * 1000 + amount_in * 997)
    (amounts,) = dex.call(dex.layout.router, "getAmountsOut(uint256,address[])", ["uint256[]"], amount_in, [weth, usdc])
    assert list(amounts) == [amount_in, by_hand] and by_hand == get_amount_out(amount_in, r_weth, r_usdc)
    assert 2_980 * 10**6 < by_hand < 3_000 * 10**6  # ~3000 USDC less the 0.3% fee and a little price impact
    (needed,) = dex.call(dex.layout.router, "getAmountIn(uint256,uint256,uint256)", ["uint256"], by_hand, r_weth, r_usdc)
    assert needed == get_amount_in(by_hand, r_weth, r_usdc) and needed <= amount_in


def test_swap_through_router_emits_uniswap_events(dex):
    pool = dex.layout.pools["WETH/USDC"]
    weth, usdc = dex.layout.tokens["WETH"].address, dex.layout.tokens["USDC"].address
    before = dex.reserves("WETH/USDC")
    amount_in = 5 * 10**18
    weth_is_0 = pool.token0 == weth
    expected = get_amount_out(amount_in, *(before if weth_is_0 else before[::-1]))
    data = encode_call("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)", amount_in, expected, [weth, usdc], dex.me, 2**40)
    receipt = dex.transact(dex.layout.router, data)
    (swap,) = _logs(receipt, MAINNET_TOPICS[("Pair", "Swap")])
    assert swap["address"] == pool.address
    a0in, a1in, a0out, a1out = decode_result(["uint256"] * 4, swap["data"])
    assert (a0in, a1in, a0out, a1out) == ((amount_in, 0, 0, expected) if weth_is_0 else (0, amount_in, expected, 0))
    assert swap["topics"][1] == "0x" + "0" * 24 + dex.layout.router[2:]  # sender = router
    assert swap["topics"][2] == "0x" + "0" * 24 + dex.me[2:]  # to = trader
    (sync,) = _logs(receipt, MAINNET_TOPICS[("Pair", "Sync")])
    after = dex.reserves("WETH/USDC")
    assert decode_result(["uint112", "uint112"], sync["data"]) == after
    assert after[0] * after[1] > before[0] * before[1]  # the fee stays in the pool: k grows


def test_first_mint_locks_minimum_liquidity_and_burn_is_proportional(dex):
    pool = dex.layout.pools["DAI/USDC"]
    (locked,) = dex.call(pool.address, "balanceOf(address)", ["uint256"], "0x" + "0" * 40)
    (supply,) = dex.call(pool.address, "totalSupply()", ["uint256"])
    (deployer_lp,) = dex.call(pool.address, "balanceOf(address)", ["uint256"], dex.layout.deployer)
    r0, r1 = dex.reserves("DAI/USDC")
    assert locked == 1000 and deployer_lp == math.isqrt(r0 * r1) - 1000 and supply == deployer_lp + 1000

    dai, usdc = dex.layout.tokens["DAI"].address, dex.layout.tokens["USDC"].address
    add = encode_call("addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)", dai, usdc, 10_000 * 10**18, 10_000 * 10**6, 0, 0, dex.me, 2**40)
    mint_receipt = dex.transact(dex.layout.router, add)
    assert len(_logs(mint_receipt, MAINNET_TOPICS[("Pair", "Mint")])) == 1
    (mine_lp,) = dex.call(pool.address, "balanceOf(address)", ["uint256"], dex.me)
    (supply,) = dex.call(pool.address, "totalSupply()", ["uint256"])
    r0, r1 = dex.reserves("DAI/USDC")
    remove = encode_call("removeLiquidity(address,address,uint256,uint256,uint256,address,uint256)", dai, usdc, mine_lp, 0, 0, dex.me, 2**40)
    receipt = dex.transact(dex.layout.router, remove)
    (burn,) = _logs(receipt, MAINNET_TOPICS[("Pair", "Burn")])
    assert decode_result(["uint256", "uint256"], burn["data"]) == (mine_lp * r0 // supply, mine_lp * r1 // supply)


def test_weth_deposit_and_withdraw_events(dex):
    weth = dex.layout.tokens["WETH"].address
    deposit = dex.transact(weth, encode_call("deposit()"), value=3 * 10**18)
    (log,) = _logs(deposit, MAINNET_TOPICS[("WETH", "Deposit")])
    assert int(log["data"], 16) == 3 * 10**18
    withdraw = dex.transact(weth, encode_call("withdraw(uint256)", 10**18))
    (log,) = _logs(withdraw, MAINNET_TOPICS[("WETH", "Withdrawal")])
    assert int(log["data"], 16) == 10**18


def test_factory_created_pairs_with_pair_created_events(dex):
    (count,) = dex.call(dex.layout.factory, "allPairsLength()", ["uint256"])
    assert count == len(dex.layout.pools)
    logs = dex.rpc.call("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest", "topics": [MAINNET_TOPICS[("Factory", "PairCreated")]]})
    created = {decode_result(["address", "uint256"], log["data"])[0].lower() for log in logs}
    assert created == {p.address for p in dex.layout.pools.values()}


# ---------------------------------------------------------------------------- pure AMM math used by the agents


def test_arb_trade_moves_pool_to_the_fee_band_edge():
    x, y, price = 1_000 * 10**18, 3_300_000 * 10**6, 3_000 * 10**6 / 10**18  # pool 3300, reference 3000
    trade = arb_trade(x, y, price)
    assert trade.sell_base and trade.profit_quote > 0
    new_x, new_y = x + trade.amount_in, y - trade.amount_out
    assert new_y / new_x == pytest.approx(price / 0.997, rel=1e-4)
    assert arb_trade(x, int(x * price), price) is None  # at the reference: no trade


def test_best_sandwich_respects_the_victims_minimum():
    r_in, r_out = 2_000 * 10**18, 6_000_000 * 10**6
    victim_in = 50 * 10**18
    min_out = get_amount_out(victim_in, r_in, r_out) * 98 // 100  # 2% slippage tolerance
    plan = best_sandwich(victim_in, min_out, r_in, r_out, max_front=r_in // 5)
    assert plan is not None and plan.profit > 0 and plan.victim_out >= min_out
    assert simulate_sandwich(plan.front_in, victim_in, r_in, r_out) == plan
    no_slack = best_sandwich(victim_in, get_amount_out(victim_in, r_in, r_out), r_in, r_out, r_in // 5)
    assert no_slack is None or no_slack.profit < victim_in // 10**6  # only integer-rounding dust is left


@pytest.mark.parametrize(
    ("signature", "args"),
    [
        ("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)", (10**18, 5, ["0x" + "ab" * 20, "0x" + "CD" * 20], "0x" + "01" * 20, 2**40)),
        ("swapExactETHForTokens(uint256,address[],address,uint256)", (0, ["0x" + "ab" * 20, "0x" + "cd" * 20, "0x" + "ef" * 20], "0x" + "01" * 20, 7)),
        ("addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)", ("0x" + "ab" * 20, "0x" + "cd" * 20, 1, 2, 3, 4, "0x" + "01" * 20, 2**256 - 1)),
        ("approve(address,uint256)", ("0x" + "ab" * 20, 2**256 - 1)),
        ("deposit()", ()),
    ],
)
def test_fast_calldata_encoder_matches_eth_abi(signature, args):
    from eth_abi import encode

    from chainlake.devnet.rpc import _parse_signature

    sel, types = _parse_signature(signature)
    assert encode_call(signature, *args) == "0x" + (sel + encode(types, list(args))).hex()
