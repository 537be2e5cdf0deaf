"""A living, deterministic DEX market on the devnet: agents trade, a sandwich bot watches the mempool.

Each round (one block): the reference price moves; arbitrageurs, noise traders, liquidity providers and
retail users send their transactions in one JSON-RPC batch; the sandwich bot reads `txpool_content` and
wraps the juiciest pending router swap in a front-run and a back-run; observers see the mempool; then one
`evm_mine` at an explicit timestamp seals the block. Nothing waits for receipts during the run (receipts
are settled in bulk with eth_getBlockReceipts), which is how the market sustains >1,000 tx/s.

Determinism: one `random.Random(seed)` drives every decision, nonces are assigned locally, fees are
distinct per transaction so block order never depends on arrival, and block timestamps are explicit, so
the same seed on a fresh devnet gives the same block hashes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from chainlake.devnet.amm import arb_trade, best_sandwich, get_amount_out
from chainlake.devnet.deploy import BLOCK_INTERVAL, DevnetLayout, PoolInfo
from chainlake.devnet.prices import ReferencePrices
from chainlake.devnet.rpc import Rpc, decode_result, encode_call, selector
from chainlake.devnet.sender import GAS, GWEI, Sender, Tx, block_receipts, latest_block, mine

Observer = Callable[[int, dict, float], None]

SWAP_EXACT_IN = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
SWAP_EXACT_OUT = "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)"
SWAP_ETH_IN = "swapExactETHForTokens(uint256,address[],address,uint256)"
SWAP_ETH_OUT = "swapExactTokensForETH(uint256,uint256,address[],address,uint256)"
ADD_LIQUIDITY = "addLiquidity(address,address,uint256,uint256,uint256,uint256,address,uint256)"
REMOVE_LIQUIDITY = "removeLiquidity(address,address,uint256,uint256,uint256,address,uint256)"
SANDWICHABLE = {selector(SWAP_EXACT_IN): SWAP_EXACT_IN, selector(SWAP_ETH_IN): SWAP_ETH_IN}

# Flow mix (besides arbitrage): what a non-arbitrage transaction is, by probability.
FLOW_MIX = {"noise": 0.79, "transfer": 0.08, "wrap": 0.08, "lp": 0.04, "approve": 0.01}
POOL_WEIGHTS = {"WETH/USDC": 0.40, "WETH/DAI": 0.20, "LINK/WETH": 0.25, "DAI/USDC": 0.15}
NOISE_SCALE_USD, NOISE_ALPHA, NOISE_CAP_USD = 1_000.0, 1.2, 400_000.0  # Pareto sizes: heavy right tail
SLIPPAGES = (0.005, 0.01, 0.02, 0.03, 0.05)
ARB_MIN_PROFIT_USD = 5.0
SANDWICH_MIN_VICTIM_USD, SANDWICH_MIN_PROFIT_USD = 10_000.0, 25.0
DEADLINE_SLACK = 600
SETTLE_EVERY = 500  # blocks between bulk receipt checks (bounds memory in endless runs)


@dataclass
class PoolState:
    """A pool as the agents see it: reserves after the last mined block, in base/quote orientation."""

    name: str
    info: PoolInfo
    base: str  # token addresses
    quote: str
    base_decimals: int
    quote_decimals: int
    reserve_base: int = 0
    reserve_quote: int = 0

    def reserves_from(self, token_in: str) -> tuple[int, int]:
        """(reserve_in, reserve_out) for a swap selling `token_in`."""
        if token_in == self.base:
            return self.reserve_base, self.reserve_quote
        return self.reserve_quote, self.reserve_base

    def other(self, token: str) -> str:
        return self.quote if token == self.base else self.base

    def price(self) -> float:
        """Pool price of base in quote, human units."""
        if not self.reserve_base:
            return float("nan")
        return (self.reserve_quote / 10**self.quote_decimals) / (self.reserve_base / 10**self.base_decimals)


@dataclass
class MarketSummary:
    """What a run did. `truth` has one row per (block, pool): the hidden reference vs. the pool price."""

    first_block: int
    last_block: int
    blocks: int
    seconds: float
    txs_sent: dict[str, int]
    txs_succeeded: dict[str, int]
    sandwiches_attempted: int
    sandwiches_landed: int
    pending_left: int
    truth: list[dict] = field(repr=False, default_factory=list)
    truth_path: str | None = None

    @property
    def tx_per_s(self) -> float:
        return sum(self.txs_sent.values()) / self.seconds if self.seconds else 0.0

    def truth_frame(self):
        """The ground-truth rows as a polars DataFrame (imported lazily: polars is only needed here)."""
        import polars as pl

        return pl.DataFrame(self.truth)


class Market:
    """The agents and their shared state; `run()` mines blocks, and may be called again to continue."""

    def __init__(self, url: str, layout: DevnetLayout, seed: int = 0, txs_per_block: int = 10, block_interval: int = BLOCK_INTERVAL):
        self.rpc = Rpc(url)
        self.layout = layout
        self.rng = random.Random(seed)
        self.txs_per_block = txs_per_block
        self.interval = block_interval
        self.sender = Sender(self.rpc)
        self.sender.sync_nonces(layout.agents.values())
        self.symbols = {info.address: s for s, info in layout.tokens.items()}
        self.decimals = {info.address: info.decimals for info in layout.tokens.values()}
        self.weth = layout.tokens["WETH"].address
        self.pools = [self._pool_state(name, info) for name, info in layout.pools.items()]
        self.role = {role: layout.agents_of(role) for role in ("noise", "arb", "lp", "sandwich", "retail")}
        self.sandwich_bot = self.role["sandwich"][0]
        self._refresh_reserves()
        self.ref = ReferencePrices(self.rng, self._start_prices())
        head = latest_block(self.rpc)
        self.head, self.timestamp = int(head["number"], 16), int(head["timestamp"], 16)
        self.sent: Counter = Counter()
        self.succeeded: Counter = Counter()
        self.kind_of: dict[str, str] = {}
        self.sandwiches: list[tuple[str, str, str]] = []
        self.sandwiches_attempted = 0
        self.sandwiches_landed = 0
        self.settled_upto = self.head

    # ------------------------------------------------------------------ setup helpers

    def _pool_state(self, name: str, info: PoolInfo) -> PoolState:
        base, quote = self.layout.tokens[info.base], self.layout.tokens[info.quote]
        return PoolState(name, info, base.address, quote.address, base.decimals, quote.decimals)

    def _start_prices(self) -> dict[str, float]:
        """Start the reference at the pools' own prices (so a resumed or re-run market starts at no-arbitrage)."""
        pools = {p.name: p for p in self.pools}
        eth = pools["WETH/USDC"].price() if "WETH/USDC" in pools else self.layout.genesis_prices_usd["WETH"]
        link = eth * pools["LINK/WETH"].price() if "LINK/WETH" in pools else self.layout.genesis_prices_usd.get("LINK", 15.0)
        dai = pools["DAI/USDC"].price() if "DAI/USDC" in pools else 1.0
        return {"WETH": eth, "USDC": 1.0, "DAI": dai, "LINK": link}

    def _refresh_reserves(self) -> None:
        """Read every pool's reserves after the last block in one batch."""
        calls = [("eth_call", [{"to": p.info.address, "data": encode_call("getReserves()")}, "latest"]) for p in self.pools]
        for pool, raw in zip(self.pools, self.rpc.batch(calls)):
            r0, r1, _ = decode_result(["uint112", "uint112", "uint32"], raw)
            base_is_0 = pool.base == pool.info.token0
            pool.reserve_base, pool.reserve_quote = (r0, r1) if base_is_0 else (r1, r0)

    # ------------------------------------------------------------------ the round

    def run(
        self,
        blocks: int | None,
        observers: Sequence[Observer] = (),
        block_time: float | None = None,
        truth_path: str | Path | None = None,
        check_receipts: bool = True,
    ) -> MarketSummary:
        """Mine `blocks` blocks (None: until KeyboardInterrupt); with `block_time`, pace blocks on a wall-clock timer."""
        first, started, truth = self.head + 1, time.perf_counter(), []
        sent_before, ok_before = Counter(self.sent), Counter(self.succeeded)
        attempted_before, landed_before = self.sandwiches_attempted, self.sandwiches_landed
        next_tick = time.monotonic()
        try:
            while blocks is None or self.head + 1 - first < blocks:
                if block_time is not None:
                    next_tick += block_time
                truth.extend(self.step(observers, mine_at=next_tick if block_time is not None else None))
                if check_receipts and self.head - self.settled_upto >= SETTLE_EVERY:
                    self.settle()
        except KeyboardInterrupt:
            if blocks is not None:
                raise
        seconds = time.perf_counter() - started
        if check_receipts:
            self.settle()
        summary = MarketSummary(
            first_block=first, last_block=self.head, blocks=self.head - first + 1, seconds=seconds,
            txs_sent=dict(self.sent - sent_before), txs_succeeded=dict(self.succeeded - ok_before),
            sandwiches_attempted=self.sandwiches_attempted - attempted_before,
            sandwiches_landed=self.sandwiches_landed - landed_before,
            pending_left=int(self.rpc.call("txpool_status")["pending"], 16), truth=truth,
        )
        if truth_path is not None:
            summary.truth_path = str(_write_parquet(summary.truth_frame(), Path(truth_path)))
        return summary

    def step(self, observers: Sequence[Observer] = (), mine_at: float | None = None) -> list[dict]:
        """One block: move the reference, send agent txs, let the bot react, show observers, mine."""
        number, ts = self.head + 1, self.timestamp + self.interval
        self.ref.step()
        deadline = ts + DEADLINE_SLACK
        txs = self._arb_txs(deadline)
        txs += [self._flow_tx(deadline) for _ in range(max(0, self.txs_per_block - len(txs)))]
        self._send(txs)
        pool = self.rpc.call("txpool_content")
        sandwich = self._sandwich_txs(pool, deadline)
        if sandwich is not None:
            victim_hash, front, back = sandwich
            self._send([front, back])
            self.sandwiches.append((front.hash, victim_hash, back.hash))
            self.sandwiches_attempted += 1
            if observers:
                pool = self.rpc.call("txpool_content")
        for observer in observers:
            observer(number, pool, time.time())
        if mine_at is not None:
            time.sleep(max(0.0, mine_at - time.monotonic()))
        mine(self.rpc, ts)
        self.head, self.timestamp = number, ts
        self._refresh_reserves()
        return self._truth_rows(number, ts)

    def _send(self, txs: list[Tx]) -> None:
        for tx, h in zip(txs, self.sender.send(txs)):
            tx.hash = h
            self.kind_of[h] = tx.kind
            self.sent[tx.kind] += 1

    def _truth_rows(self, number: int, ts: int) -> list[dict]:
        return [
            {
                "block_number": number, "timestamp": ts, "regime": self.ref.regime, "pool": p.name,
                "pool_address": p.info.address, "base": p.info.base, "quote": p.info.quote,
                "base_usd": self.ref.usd[p.info.base], "quote_usd": self.ref.usd[p.info.quote],
                "ref_price": self.ref.pair_price(p.info.base, p.info.quote), "pool_price": p.price(),
                "reserve_base": str(p.reserve_base), "reserve_quote": str(p.reserve_quote),
            }
            for p in self.pools
        ]

    # ------------------------------------------------------------------ agents

    def _tip(self, low_gwei: float, high_gwei: float) -> int:
        """A random priority fee with wei resolution, so no two txs tie and block order never hinges on arrival."""
        return int(self.rng.uniform(low_gwei, high_gwei) * GWEI) + self.rng.randrange(1_000_000)

    def _units(self, token: str, usd: float) -> int:
        return int(usd / self.ref.usd[self.symbols[token]] * 10 ** self.decimals[token])

    def _usd(self, token: str, amount: int) -> float:
        return amount / 10 ** self.decimals[token] * self.ref.usd[self.symbols[token]]

    def _arb_txs(self, deadline: int) -> list[Tx]:
        """Arbitrageurs: trade each pool toward the reference when the optimal trade clears gas-level profit."""
        txs = []
        for i, pool in enumerate(self.pools):
            price_raw = self.ref.pair_price(pool.info.base, pool.info.quote) * 10**pool.quote_decimals / 10**pool.base_decimals
            trade = arb_trade(pool.reserve_base, pool.reserve_quote, price_raw)
            if trade is None or trade.profit_quote / 10**pool.quote_decimals * self.ref.usd[pool.info.quote] < ARB_MIN_PROFIT_USD:
                continue
            agent = self.role["arb"][i % len(self.role["arb"])]
            token_in = pool.base if trade.sell_base else pool.quote
            path = [token_in, pool.other(token_in)]
            data = encode_call(SWAP_EXACT_IN, trade.amount_in, trade.amount_out * 995 // 1000, path, agent, deadline)
            txs.append(Tx(agent, self.layout.router, data, gas=GAS["swap"], tip=self._tip(3, 6), kind="arb"))
        return txs

    def _flow_tx(self, deadline: int) -> Tx:
        """One non-arbitrage transaction, its kind drawn from FLOW_MIX."""
        u, acc = self.rng.random(), 0.0
        for kind, p in FLOW_MIX.items():
            acc += p
            if u < acc:
                break
        if kind == "transfer":
            return self._transfer_tx()
        if kind == "wrap":
            return self._wrap_tx()
        if kind == "lp":
            return self._lp_tx(deadline)
        if kind == "approve":
            return self._approve_tx()
        return self._noise_tx(deadline)

    def _noise_tx(self, deadline: int) -> Tx:
        """Noise trader: random pool and direction, Pareto-sized notional, random slippage, through the router."""
        rng = self.rng
        pool = rng.choices(self.pools, weights=[POOL_WEIGHTS.get(p.name, 0.1) for p in self.pools])[0]
        token_in = pool.base if rng.random() < 0.5 else pool.quote
        token_out = pool.other(token_in)
        r_in, r_out = pool.reserves_from(token_in)
        usd = min(NOISE_CAP_USD, NOISE_SCALE_USD * rng.paretovariate(NOISE_ALPHA))
        amount_in = max(1, min(self._units(token_in, usd), r_in // 10))
        expected = get_amount_out(amount_in, r_in, r_out)
        slip = rng.choice(SLIPPAGES)
        trader = rng.choice(self.role["noise"])
        path, mode, value = [token_in, token_out], rng.random(), 0
        if mode < 0.15 and expected > 0:
            data = encode_call(SWAP_EXACT_OUT, expected, int(amount_in * (1 + slip)), path, trader, deadline)
        elif mode < 0.30 and token_in == self.weth:
            data, value = encode_call(SWAP_ETH_IN, int(expected * (1 - slip)), path, trader, deadline), amount_in
        elif mode < 0.30 and token_out == self.weth:
            data = encode_call(SWAP_ETH_OUT, amount_in, int(expected * (1 - slip)), path, trader, deadline)
        else:
            data = encode_call(SWAP_EXACT_IN, amount_in, int(expected * (1 - slip)), path, trader, deadline)
        return Tx(trader, self.layout.router, data, value=value, gas=GAS["swap"], tip=self._tip(0.5, 3), kind="noise")

    def _transfer_tx(self) -> Tx:
        """Retail: a plain ETH transfer to another agent."""
        src = self.rng.choice(self.role["retail"])
        dst = self.rng.choice([a for a in self.layout.agents.values() if a != src])
        value = int(self.rng.uniform(0.01, 3.0) * 10**18)
        return Tx(src, dst, value=value, gas=GAS["transfer"], tip=self._tip(0.2, 1.5), kind="transfer")

    def _wrap_tx(self) -> Tx:
        """Retail: wrap ETH into WETH (mostly) or unwrap a little."""
        who = self.rng.choice(self.role["retail"])
        if self.rng.random() < 0.7:
            value = int(self.rng.uniform(0.1, 20.0) * 10**18)
            return Tx(who, self.weth, encode_call("deposit()"), value=value, gas=GAS["deposit"], tip=self._tip(0.2, 1.5), kind="wrap")
        amount = int(self.rng.uniform(0.05, 2.0) * 10**18)
        return Tx(who, self.weth, encode_call("withdraw(uint256)", amount), gas=GAS["withdraw"], tip=self._tip(0.2, 1.5), kind="wrap")

    def _approve_tx(self) -> Tx:
        """Retail: set a token allowance for the router (retail never trades, so this harms nothing)."""
        who = self.rng.choice(self.role["retail"])
        token = self.rng.choice(sorted(self.symbols))
        amount = self._units(token, self.rng.uniform(100, 10_000))
        data = encode_call("approve(address,uint256)", self.layout.router, amount)
        return Tx(who, token, data, gas=GAS["approve"], tip=self._tip(0.2, 1.5), kind="approve")

    def _lp_tx(self, deadline: int) -> Tx:
        """Liquidity provider: add at the pool ratio, or (if it holds LP tokens) remove a slice."""
        lp = self.rng.choice(self.role["lp"])
        pool = self.rng.choice(self.pools)
        base, quote = pool.base, pool.quote
        if self.rng.random() < 0.4:
            raw = self.rpc.call("eth_call", {"to": pool.info.address, "data": encode_call("balanceOf(address)", lp)}, "latest")
            balance = int(raw, 16)
            if balance > 0:
                liquidity = int(balance * self.rng.uniform(0.2, 0.6))
                data = encode_call(REMOVE_LIQUIDITY, base, quote, liquidity, 0, 0, lp, deadline)
                return Tx(lp, self.layout.router, data, gas=GAS["remove_liquidity"], tip=self._tip(0.5, 2), kind="lp")
        base_amount = self._units(base, self.rng.uniform(20_000, 300_000))
        quote_amount = base_amount * pool.reserve_quote // pool.reserve_base
        args = (base, quote, base_amount, quote_amount * 101 // 100, base_amount * 97 // 100, quote_amount * 97 // 100, lp, deadline)
        return Tx(lp, self.layout.router, encode_call(ADD_LIQUIDITY, *args), gas=GAS["add_liquidity"], tip=self._tip(0.5, 2), kind="lp")

    def _sandwich_txs(self, txpool: dict, deadline: int) -> tuple[str, Tx, Tx] | None:
        """Sandwich bot: find the most profitable pending router swap and bracket it by fee.

        Returns (victim_hash, front_tx, back_tx) or None. The front-run bids just above the victim's fee
        and the back-run just below, so a fee-ordered block puts them front, victim, back. One sandwich
        per block: the bot's own nonces would otherwise interleave its brackets.
        """
        best = None
        for victim in _pending(txpool):
            candidate = self._plan_sandwich(victim)
            if candidate and (best is None or candidate[0] > best[0]):
                best = candidate
        if best is None:
            return None
        _, victim, token_in, token_out, plan = best
        bot = self.sandwich_bot
        v_tip, v_max = int(victim["maxPriorityFeePerGas"], 16), int(victim["maxFeePerGas"], 16)
        front = Tx(bot, self.layout.router, encode_call(SWAP_EXACT_IN, plan.front_in, plan.front_out, [token_in, token_out], bot, deadline),
                   gas=GAS["swap"], tip=v_tip + 1, max_fee=v_max + 1, kind="sandwich")
        back = Tx(bot, self.layout.router, encode_call(SWAP_EXACT_IN, plan.front_out, 0, [token_out, token_in], bot, deadline),
                  gas=GAS["swap"], tip=max(1, v_tip - 1), max_fee=v_max - 1, kind="sandwich")
        return victim["hash"], front, back

    def _plan_sandwich(self, victim: dict):
        """Decode a pending router swap and size a sandwich on it; None when it is not worth it."""
        if (victim.get("to") or "").lower() != self.layout.router or victim["from"].lower() == self.sandwich_bot:
            return None
        data = victim.get("input") or victim.get("data") or "0x"
        signature = SANDWICHABLE.get(data[:10])
        if signature is None or "maxPriorityFeePerGas" not in victim:
            return None
        try:
            if signature == SWAP_EXACT_IN:
                amount_in, min_out, path = _word_at(data, 0), _word_at(data, 1), _array_at(data, 2)
            else:
                amount_in, min_out, path = int(victim["value"], 16), _word_at(data, 0), _array_at(data, 1)
        except (ValueError, IndexError):
            return None
        if len(path) != 2:
            return None
        token_in, token_out = path[0].lower(), path[1].lower()
        pool = next((p for p in self.pools if {p.base, p.quote} == {token_in, token_out}), None)
        if pool is None or self._usd(token_in, amount_in) < SANDWICH_MIN_VICTIM_USD:
            return None
        r_in, r_out = pool.reserves_from(token_in)
        plan = best_sandwich(amount_in, min_out, r_in, r_out, max_front=r_in // 5)
        if plan is None:
            return None
        profit_usd = self._usd(token_in, plan.profit)
        if profit_usd < SANDWICH_MIN_PROFIT_USD:
            return None
        return profit_usd, victim, token_in, token_out, plan

    # ------------------------------------------------------------------ settlement

    def settle(self) -> None:
        """Check receipts of every block mined since the last settlement, in bulk; count successes and sandwiches."""
        if self.head <= self.settled_upto:
            return
        position: dict[str, tuple[int, int, bool]] = {}
        for r in block_receipts(self.rpc, self.settled_upto + 1, self.head):
            h = r["transactionHash"]
            ok = r["status"] == "0x1"
            kind = self.kind_of.pop(h, None)
            if kind is not None and ok:
                self.succeeded[kind] += 1
            position[h] = (int(r["blockNumber"], 16), int(r["transactionIndex"], 16), ok)
        remaining = []
        for front, victim, back in self.sandwiches:
            if front not in position or victim not in position or back not in position:
                remaining.append((front, victim, back))
                continue
            (bf, i_f, ok_f), (bv, i_v, ok_v), (bb, i_b, ok_b) = position[front], position[victim], position[back]
            if bf == bv == bb and i_f < i_v < i_b and ok_f and ok_v and ok_b:
                self.sandwiches_landed += 1
        self.sandwiches = remaining
        self.settled_upto = self.head

    def close(self) -> None:
        self.rpc.close()


def _word_at(data: str, index: int) -> int:
    """The index-th 32-byte argument word of 0x calldata (decoded by hand: the bot scans every pending swap)."""
    start = 10 + 64 * index
    word = data[start : start + 64]
    if len(word) != 64:
        raise ValueError("calldata too short")
    return int(word, 16)


def _array_at(data: str, index: int) -> list[str]:
    """The address[] whose offset is the index-th argument word."""
    offset = _word_at(data, index) // 32
    length = _word_at(data, offset)
    if length > 8:
        raise ValueError("implausible path length")
    return ["0x" + format(_word_at(data, offset + 1 + i), "040x") for i in range(length)]


def _pending(txpool: dict) -> Iterable[dict]:
    for by_nonce in (txpool.get("pending") or {}).values():
        yield from by_nonce.values()


def _write_parquet(frame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path)
    return path


def run_market(
    url: str,
    layout: DevnetLayout,
    blocks: int | None,
    seed: int = 0,
    txs_per_block: int = 10,
    observers: Sequence[Observer] = (),
    block_time: float | None = None,
    truth_path: str | Path | None = None,
) -> MarketSummary:
    """Run a fresh Market on a deployed devnet for `blocks` blocks (None: until Ctrl-C) and summarise it.

    `observers` are called once per block right before mining with (next_block_number, txpool_content,
    wall_time). `truth_path` writes the per-block reference-vs-pool ground truth as Parquet.
    """
    market = Market(url, layout, seed=seed, txs_per_block=txs_per_block)
    try:
        return market.run(blocks, observers=observers, block_time=block_time, truth_path=truth_path)
    finally:
        market.close()
