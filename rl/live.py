"""Live trading on a Uniswap-V2-style DEX: a stored policy signs and sends real swaps, block by block.

Per new head h (`LiveTrader.step`):
1. the lake catches up with the node (`chainlake.follow.follow_step`), so the policy sees block h;
2. transactions booked less than `confirmations` blocks ago are re-checked when their block's hash changed
   (or the follow step found a fork at or below it): gone from the chain, their fills are reversed and they
   are in flight again (status "reorged"); mined elsewhere, they are re-booked from the new receipt;
3. every transaction in flight is followed: mined (fills read from the receipt's Transfer logs, gas from
   gasUsed x effectiveGasPrice), reverted, replaced (our nonce was mined under another hash: that
   transaction's effects are booked instead) or dropped (gone from the pool and not mined
   `drop_after_blocks` after sending: the nonce is resynced);
4. the ledger's book (base, quote, ETH) is reconciled with on-chain balances at block h; any difference is
   logged, shown, and written into the rows resolved at that block; one that stays `mismatch_heads`
   consecutive heads with nothing in flight trips the kill switch ("reconciliation mismatch");
5. the policy decides for h + 1 (`rl.trader.PolicyRunner`), the order is sized as the env sizes it
   (`order_quantity`), quoted on chain (the router's getAmountsIn/Out at block h), risk-checked
   (`rl.risk.check`, with the larger of the book's and the chain's position, and funds that both hold),
   built as a router swap with an amount bound from the slippage limit and a deadline, signed
   (`rl.wallet.Wallet`) and sent, or printed in dry-run mode.

Each phase is guarded: a failure is one line and the head's later phases wait for the next head (a lake or
features that fail skip only the decision); node errors at `max_failed_heads` consecutive heads stop the run
with its report. A send without a clear answer (a timeout, "already known") is not a rejection: the
transaction's hash is known before sending, so the node is asked for it; it is in flight ("sent", or
"unknown" until it is mined or dropped). Only a refusal by the node of a transaction it does not have is
"rejected".

At most one swap is in flight: while one is, new decisions are recorded as `blocked:in_flight` (an order
that could not land at its decision block has no business being stacked behind another).

Every order is one row of `LAKE/live_ledger/<run_id>.parquet` (catalog view `live_ledger`), and so is every
hold (kind "decision", status "hold", with the book and the reconciliation at that block), rewritten
atomically whenever a row changes; the run's settings are in `<run_id>.meta.json` beside it. The key never
reaches either, nor a log line, nor an error: only the wallet's address does; node URLs are cut to
scheme://host:port wherever they would appear (hosted nodes carry API keys in them).

Refusals, before anything is sent: a chain id other than the devnet's (31337) unless `allow_chain_id` names
it, a router that does not trade the policy's pool, no ETH for gas.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from chainlake.devnet.anvil import DEVNET_CHAIN_ID
from chainlake.devnet.rpc import Rpc, RpcError, decode_result, encode_call, event_topic
from chainlake.errors import ChainlakeError, ConfigError, NodeError
from chainlake.ingest.lake import write_parquet_atomic
from chainlake.rpc import node_origin
from rl.env import ACTION_NAMES, BUY, SELL
from rl.risk import KillSwitch, Order, RiskLimits, RiskState, check
from rl.trader import order_quantity, order_sizes
from rl.wallet import Wallet

log = logging.getLogger(__name__)

GWEI = 10**9
MAX_UINT = 2**256 - 1
SWAP_EXACT_IN = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
SWAP_EXACT_OUT = "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)"
TRANSFER = event_topic("Transfer(address,address,uint256)")
DEPOSIT = event_topic("Deposit(address,uint256)")
WITHDRAWAL = event_topic("Withdrawal(address,uint256)")
LEDGER = "live_ledger"

LEDGER_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("policy", pa.string()), ("version", pa.string()), ("pool", pa.string()),
    ("address", pa.string()), ("kind", pa.string()), ("decision_block", pa.int64()), ("action", pa.string()),
    ("status", pa.string()), ("tx_hash", pa.string()), ("replaced_by", pa.string()), ("nonce", pa.int64()),
    ("sent_block", pa.int64()), ("mined_block", pa.int64()), ("intended_base", pa.float64()),
    ("intended_quote", pa.float64()), ("limit_quote", pa.float64()), ("actual_base", pa.float64()),
    ("actual_quote", pa.float64()), ("gas_eth", pa.float64()), ("position", pa.float64()), ("cash", pa.float64()),
    ("equity", pa.float64()), ("recon_base", pa.float64()), ("recon_quote", pa.float64()),
    ("recon_eth", pa.float64()), ("error", pa.string()), ("updated_ms", pa.int64()),
])


@dataclass(frozen=True)
class LiveConfig:
    """How the trader sends: everything besides the policy, the key and the node."""

    limits: RiskLimits = field(default_factory=RiskLimits)
    dry_run: bool = False
    allow_chain_id: int | None = None  # the one non-devnet chain id the user confirmed
    deadline_seconds: int = 120  # swap deadline after the latest block's timestamp
    drop_after_blocks: int = 3  # a tx gone from the pool and unmined this many blocks after sending is dropped
    gas_limit: int = 300_000
    priority_fee: int = GWEI
    follow: bool = True  # catch the lake up at every head (off: the caller keeps it current)
    # to `follow_step`: datasets, addresses, tokens, partition_size (the lake's own, so its follow state holds)
    follow_options: dict = field(default_factory=dict)
    confirmations: int = 12  # also how deep resolved transactions are re-checked after a reorg
    poll_seconds: float = 0.5
    max_failed_heads: int = 5  # node errors at this many consecutive heads (or head polls) stop the run
    mismatch_heads: int = 2  # an unexplained mismatch at this many consecutive heads, nothing in flight: kill


@dataclass
class Book:
    """What the ledger says the account holds, in integer units (base, quote, wei)."""

    base: int
    quote: int
    eth: int
    gas_wei: int = 0

    def apply(self, fills: "Fills", sign: int = 1) -> None:
        self.base += sign * fills.base
        self.quote += sign * fills.quote
        self.eth += sign * fills.eth
        self.gas_wei += sign * fills.gas


@dataclass(frozen=True)
class Fills:
    """A mined transaction's effect on the account: token and ETH deltas (gas included in eth) and gas."""

    base: int
    quote: int
    eth: int
    gas: int


@dataclass
class InFlight:
    row: int
    nonce: int
    hash: str
    sent_block: int
    kind: str
    status: str = "sent"  # sent; unknown (the send's answer was lost); reorged (its block left the chain)
    since: int | None = None  # the head the drop timer counts from (sent_block unless reorged out later)

    def age(self, head: int) -> int:
        return head - (self.sent_block if self.since is None else self.since)


@dataclass
class Resolved:
    """A booked transaction, kept until it is `confirmations` deep so that a reorg can un-book it."""

    flight: InFlight
    status: str
    booked_hash: str  # the transaction whose receipt was booked (the replacement's, when replaced)
    block: int
    block_hash: str
    fills: Fills


@dataclass
class LiveReport:
    """What a run did; `pnl` is quote value gained, net of gas when the pool has a WETH side (else gas is
    only in `gas_eth`)."""

    run_id: str
    policy: str
    version: str
    pool: str
    address: str
    chain_id: int
    first_head: int
    last_head: int
    start_equity: float
    end_equity: float
    pnl: float
    gas_eth: float
    statuses: dict[str, int]
    reconciled: bool
    mismatches: list[dict]
    killed: str | None
    in_flight: int
    ledger_path: Path | None
    rows: list[dict] = field(repr=False, default_factory=list)
    stopped: str | None = None  # why the run stopped early (node errors), else None

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "no orders"
        recon = "balances reconciled" if self.reconciled else f"{len(self.mismatches)} reconciliation mismatch(es)"
        killed = f"; kill switch: {self.killed}" if self.killed else ""
        killed += f"; stopped: {self.stopped}" if self.stopped else ""
        killed += f"; {self.in_flight} transaction(s) still in flight" if self.in_flight else ""
        return (f"run {self.run_id}: heads {self.first_head}..{self.last_head}, {counts}; equity "
                f"{self.start_equity:,.4f} -> {self.end_equity:,.4f}, P&L {self.pnl:+,.4f} "
                f"(gas {self.gas_eth:.6f} ETH); {recon}{killed}")


class Chain:
    """The JSON-RPC calls the trader makes, every read pinned to a block number (no 'latest' drift)."""

    def __init__(self, url: str):
        self.rpc = Rpc(url, timeout=30)

    def head(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def chain_id(self) -> int:
        return int(self.rpc.call("eth_chainId"), 16)

    def block(self, number: int, full: bool = False) -> dict:
        return self.rpc.call("eth_getBlockByNumber", hex(number), full)

    def block_hashes(self, numbers: list[int]) -> dict[int, str | None]:
        """The hash of each block in `numbers` (None past the node's head), in one batch."""
        blocks = self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        return {n: (b or {}).get("hash") for n, b in zip(numbers, blocks)}

    def call(self, to: str, signature: str, out: list[str], *args, block: int) -> tuple:
        return decode_result(out, self.rpc.call("eth_call", {"to": to, "data": encode_call(signature, *args)},
                                                hex(block)))

    def balances(self, tokens: tuple[str, str], owner: str, block: int) -> tuple[int, int, int]:
        """(balanceOf token 0, balanceOf token 1, ETH) of `owner` at `block`, in one batch."""
        tag = hex(block)
        calls = [("eth_call", [{"to": t, "data": encode_call("balanceOf(address)", owner)}, tag]) for t in tokens]
        a, b, eth = self.rpc.batch(calls + [("eth_getBalance", [owner, tag])])
        return int(a, 16), int(b, 16), int(eth, 16)

    def nonce(self, owner: str, tag: str | int) -> int:
        return int(self.rpc.call("eth_getTransactionCount", owner, hex(tag) if isinstance(tag, int) else tag), 16)

    def receipt(self, tx_hash: str) -> dict | None:
        return self.rpc.call("eth_getTransactionReceipt", tx_hash)

    def transaction(self, tx_hash: str) -> dict | None:
        return self.rpc.call("eth_getTransactionByHash", tx_hash)

    def send_raw(self, raw: str) -> str:
        return self.rpc.call("eth_sendRawTransaction", raw)

    def close(self) -> None:
        self.rpc.close()


class Ledger:
    """The run's rows, rewritten atomically as one Parquet file whenever one changes (a few rows per block)."""

    def __init__(self, lake_dir: Path | None, run_id: str, base: dict):
        self.path = None if lake_dir is None else Path(lake_dir) / LEDGER / f"{run_id}.parquet"
        self.base = base
        self.rows: list[dict] = []

    def add(self, **values) -> int:
        self.rows.append({name: None for name in LEDGER_SCHEMA.names} | self.base | values)
        return self.update(len(self.rows) - 1)

    def update(self, index: int, **values) -> int:
        self.rows[index].update(values, updated_ms=int(time.time() * 1000))
        self.flush()
        return index

    def flush(self) -> None:
        if self.path is not None and self.rows:
            write_parquet_atomic(self.path, pa.Table.from_pylist(self.rows, schema=LEDGER_SCHEMA))

    def write_meta(self, meta: dict) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.stem}.meta.json.tmp")
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
            tmp.replace(self.path.with_name(f"{self.path.stem}.meta.json"))


class LiveTrader:
    """One account trading one policy's pool; `start()` once, then `step()` per new head, `close()` at the end.

    `runner` is a `rl.trader.PolicyRunner` (or anything with its attributes and decision_block / features_at
    / act). `lake_dir` is where the lake is followed and the ledger written (None: neither).
    """

    def __init__(self, url: str, wallet: Wallet, runner, router: str, lake_dir: str | Path | None,
                 config: LiveConfig | None = None, kill: KillSwitch | None = None,
                 echo: Callable[[str], None] = print, run_id: str | None = None):
        self.url, self.wallet, self.runner = url, wallet, runner
        self.router = router.lower()
        self.lake_dir = None if lake_dir is None else Path(lake_dir)
        self.config = config or LiveConfig()
        self.kill = kill or KillSwitch()
        self.echo = echo
        self.address = wallet.address
        self.tokens = (runner.base_token.lower(), runner.quote_token.lower())
        self.scale = (10 ** int(runner.base_decimals), 10 ** int(runner.quote_decimals))
        self.run_id = run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{runner.name}-{secrets.token_hex(3)}"
        self.chain = Chain(url)
        self.ledger = Ledger(self.lake_dir, self.run_id, {
            "run_id": self.run_id, "policy": runner.name, "version": runner.version, "pool": runner.pool,
            "address": self.address})
        self.in_flight: dict[int, InFlight] = {}
        self.resolved: list[Resolved] = []
        self.mismatches: list[dict] = []
        self.mismatch_run = 0  # consecutive heads with an unexplained mismatch and nothing in flight
        self.killed_at: int | None = None
        self.last_decided = -1
        self.failed_heads = 0  # consecutive heads (or head polls) where a node call failed
        self.stopped: str | None = None
        self._node_failed = False
        self._fork: int | None = None
        self._follow_client = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Check the node, the pool and the account; read the starting book; approve the router if needed."""
        try:
            self._start()
        except NodeError as exc:  # its text may hold the node's URL (API keys): shown without its path
            message = self.redact(str(exc))
        else:
            return
        raise NodeError(message)

    def _start(self) -> None:
        self.chain_id = self.chain.chain_id()
        guard_chain_id(self.chain_id, self.config)
        if self.config.follow and self.lake_dir is not None:  # a bad follow request fails here, not every block
            from chainlake.follow import FOLLOW_DATASETS, check_request

            options = self.config.follow_options
            check_request(options.get("datasets", FOLLOW_DATASETS), options.get("addresses", ()),
                          self.config.confirmations)
        self.head = self.first_head = self.chain.head()
        self._check_router()
        base, quote, eth = self.chain.balances(self.tokens, self.address, self.head)
        self.book = Book(base, quote, eth)
        self.onchain = (base, quote, eth)
        self.last_diff = {"recon_base": 0.0, "recon_quote": 0.0, "recon_eth": 0.0}
        self.mid = self._mid(self.head)
        self.start_equity = self.equity()
        self.day, self.day_start = self._day(self.head), self.net_value()
        self.trade_size, self.max_position = order_sizes(self.runner.config, self.start_equity, self.mid)
        self.nonce = self.chain.nonce(self.address, "pending")
        self._check_gas_money()
        self.ledger.write_meta(self.meta())
        mode = "DRY RUN (nothing is sent)" if self.config.dry_run else "LIVE"
        self.echo(f"{mode}: {self.runner.name} {self.runner.version} on pool {self.runner.pool} "
                  f"({self.runner.base_symbol}/{self.runner.quote_symbol}), account {self.address}, chain "
                  f"{self.chain_id}, head {self.head}; book {self.position():,.6f} {self.runner.base_symbol} + "
                  f"{self.cash():,.2f} {self.runner.quote_symbol} = {self.start_equity:,.2f}; trade size "
                  f"{self.trade_size:,.6f}, max position {self.max_position:,.6f}")
        self._approve_router()

    def _check_router(self) -> None:
        (factory,) = self.chain.call(self.router, "factory()", ["address"], block=self.head)
        (pair,) = self.chain.call(factory, "getPair(address,address)", ["address"], *self.tokens, block=self.head)
        if pair.lower() != self.runner.pool:
            raise ConfigError(f"router {self.router} does not trade pool {self.runner.pool} "
                              f"(its factory has {pair.lower()} for these tokens)")

    def _check_gas_money(self) -> None:
        need = self.config.gas_limit * self._max_fee(self.chain.block(self.head))
        if not self.config.dry_run and self.book.eth < need:
            raise ConfigError(f"account {self.address} has {self.book.eth / 1e18:.6f} ETH, less than one swap's "
                              f"gas allowance ({need / 1e18:.6f} ETH): fund it first")

    def _approve_router(self) -> None:
        for token in self.tokens:
            (allowance,) = self.chain.call(token, "allowance(address,address)", ["uint256"], self.address,
                                           self.router, block=self.head)
            if allowance < MAX_UINT // 2:
                data = encode_call("approve(address,uint256)", self.router, MAX_UINT)
                row = self.ledger.add(kind="approve", status="new", action=f"approve {token}")
                self._send(row, data, self.chain.block(self.head), "approve", gas=60_000, to=token)

    def meta(self) -> dict:
        """The run's settings (never the key): written beside the ledger."""
        return {"run_id": self.run_id, "policy": self.runner.name, "version": self.runner.version,
                "pool": self.runner.pool, "base": self.runner.base_symbol, "quote": self.runner.quote_symbol,
                "address": self.address, "router": self.router, "chain_id": self.chain_id,
                "node": node_origin(self.url),
                "first_head": self.first_head, "trade_size": self.trade_size, "max_position": self.max_position,
                "config": {**asdict(self.config), "limits": asdict(self.config.limits)}}

    # ------------------------------------------------------------------ per head

    def step(self, decide: bool = True) -> int | None:
        """Handle the node's newest head if it is new (see the module docstring); the head, or None.

        Every phase is guarded: one that fails says so in one line and the phases that need it wait for the
        next head (a lake that cannot catch up, or features the policy cannot read, skip only the decision;
        a node error while following transactions, reading the price or reconciling skips the rest of the
        head, and the transactions in flight are followed again at the next one). Node errors at
        `max_failed_heads` consecutive heads (or head polls) set `stopped`. `decide=False` only follows.
        """
        self._node_failed = False
        try:
            head = self.chain.head()
        except NodeError as exc:
            self._failed("cannot read the head", exc)
            self._count_failure()
            return None
        if head <= self.head:
            return None
        self.head, self._fork = head, None
        followed = self._guarded("the lake did not catch up", self._follow)
        chain_ok = (self._guarded("cannot re-check booked transactions for a reorg", self._check_reorgs)
                    and self._guarded("cannot follow the transactions in flight", self._track_all)
                    and self._guarded("cannot read the pool's price", self._read_mid)
                    and self._guarded("cannot reconcile the book with the chain", self._reconcile)
                    and self._guarded("cannot read the block's date", self._roll_day))
        if self.kill.tripped():
            self._note_kill()
        elif decide and followed and chain_ok:
            self._guarded("no decision", self._decide)
        self._count_failure()
        return head

    def _guarded(self, what: str, action: Callable[[], Any]) -> bool:
        try:
            action()
        except ChainlakeError as exc:
            self._failed(what, exc)
            return False
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        self._node_failed |= isinstance(exc, NodeError)
        message = f"block {self.head}: {what}: {self.redact(str(exc))}"
        log.warning(message)
        self.echo(message)

    def _count_failure(self) -> None:
        self.failed_heads = self.failed_heads + 1 if self._node_failed else 0
        if self.failed_heads >= self.config.max_failed_heads and self.stopped is None:
            self.stopped = f"node errors at {self.failed_heads} consecutive heads"
            self.echo(f"block {self.head}: stopping, {self.stopped}; {len(self.in_flight)} transaction(s) "
                      f"still in flight (see the ledger)")

    def retry_seconds(self) -> float:
        """How long to wait before polling again: longer while the node keeps failing (at most 30 s)."""
        if not self.failed_heads:
            return self.config.poll_seconds
        return min(max(self.config.poll_seconds, 2.0 ** self.failed_heads), 30.0)

    def redact(self, text: str) -> str:
        """`text` fit for the ledger, the metadata and the echo: no key, and node URLs cut to scheme://host:port
        (hosted nodes carry API keys in the path or query)."""
        text = self.wallet.redact(text)
        if self.url:
            text = text.replace(self.url, node_origin(self.url))
        return _URL.sub(_origin_of_match, text)

    def _follow(self) -> None:
        from chainlake.follow import follow_step
        from chainlake.rpc import RpcClient

        if not self.config.follow or self.lake_dir is None:
            return
        if self._follow_client is None:
            self._follow_client = RpcClient(self.url)
        step = follow_step(self._follow_client, self.url, self.lake_dir, confirmations=self.config.confirmations,
                           **self.config.follow_options)
        forks = [b for b in (step.fork, step.late_fork) if b is not None]
        self._fork = min(forks) if forks else None
        log.debug("follow: %s", step.summary())

    def _read_mid(self) -> None:
        self.mid = self._mid(self.head)

    def _note_kill(self) -> None:
        if self.killed_at is None:
            self.killed_at = self.head
            self.echo(f"block {self.head}: kill switch ({self.kill.reason}): no new orders; "
                      f"{len(self.in_flight)} in flight still followed")

    # ------------------------------------------------------------------ following sent transactions

    def _track_all(self) -> None:
        for flight in sorted(self.in_flight.values(), key=lambda f: f.nonce):
            self._track(flight)

    def _track(self, flight: InFlight) -> None:
        receipt = self.chain.receipt(flight.hash)
        if receipt is not None and int(receipt["blockNumber"], 16) <= self.head:
            status = "mined" if receipt["status"] == "0x1" else "reverted"
            return self._resolve(flight, status, receipt, self.chain.transaction(flight.hash))
        if self.chain.nonce(self.address, self.head) > flight.nonce:
            replacement = self._find_nonce(flight)
            if replacement is None:
                raise NodeError(f"nonce {flight.nonce} of {self.address} was mined by {self.head}, but no block "
                                f"{flight.sent_block + 1}..{self.head} holds it")
            receipt = self.chain.receipt(replacement["hash"])
            return self._resolve(flight, "replaced", receipt, replacement)
        if flight.status == "sent" and flight.age(self.head) < self.config.drop_after_blocks:
            return
        known = self.chain.transaction(flight.hash) is not None
        if known and flight.status != "sent":  # the node has it after all: an ordinary transaction in flight
            flight.status = "sent"
            self.ledger.update(flight.row, status="sent")
            self.echo(f"block {self.head}: {flight.kind} {flight.hash} is in the node's pool")
        elif not known and flight.age(self.head) >= self.config.drop_after_blocks:
            self._drop(flight)

    def _find_nonce(self, flight: InFlight) -> dict | None:
        for number in range(flight.sent_block + 1, self.head + 1):
            for tx in self.chain.block(number, full=True)["transactions"]:
                if tx["from"].lower() == self.address and int(tx["nonce"], 16) == flight.nonce:
                    return tx
        return None

    def _resolve(self, flight: InFlight, status: str, receipt: dict, tx: dict, again: bool = False,
                 mid: float | None = None) -> None:
        fills = self.fills(receipt, tx)
        mid = self._mid(self.head) if mid is None else mid  # every node call before the book moves
        book_values = self._book_values(mid, fills)
        self.book.apply(fills)
        self.in_flight.pop(flight.nonce, None)
        mined = int(receipt["blockNumber"], 16)
        self.resolved.append(Resolved(flight, status, tx["hash"], mined, receipt["blockHash"], fills))
        values = {"status": status, "mined_block": mined, "replaced_by": None,
                  "actual_base": fills.base / self.scale[0], "actual_quote": fills.quote / self.scale[1],
                  "gas_eth": fills.gas / 1e18}
        if status == "replaced":
            values["replaced_by"] = tx["hash"]
        if again:  # re-booked after a reorg: the next reconciliation is its check
            values.update(recon_base=None, recon_quote=None, recon_eth=None)
        self.ledger.update(flight.row, **values, **book_values)
        extra = f" by {tx['hash']}" if status == "replaced" else ""
        self.echo(f"block {self.head}: {flight.kind} {flight.hash} {status}{extra} in block "
                  f"{values['mined_block']}{' (re-booked after a reorg)' if again else ''}: "
                  f"{values['actual_base']:+,.6f} {self.runner.base_symbol}, "
                  f"{values['actual_quote']:+,.4f} {self.runner.quote_symbol}, gas {values['gas_eth']:.6f} ETH")

    def _drop(self, flight: InFlight) -> None:
        nonce = self.chain.nonce(self.address, "pending")
        book_values = self._book_values(self._mid(self.head))
        del self.in_flight[flight.nonce]
        self.nonce = nonce
        self.ledger.update(flight.row, status="dropped", **book_values)
        self.echo(f"block {self.head}: {flight.kind} {flight.hash} dropped (not in the pool, not mined "
                  f"{flight.age(self.head)} blocks after {'sending' if flight.since is None else 'its reorg'}); "
                  f"next nonce {self.nonce}")

    # ------------------------------------------------------------------ reorgs of booked transactions

    def _check_reorgs(self) -> None:
        """Re-check every booked transaction less than `confirmations` deep whose block hash changed (or that
        the follow step's fork reaches): gone from the chain, its fills are reversed and it is in flight
        again; mined elsewhere, it is re-booked from its new receipt."""
        self.resolved = [r for r in self.resolved if self.head - r.block < self.config.confirmations]
        if not self.resolved:
            return
        hashes = self.chain.block_hashes(sorted({r.block for r in self.resolved}))
        for r in list(self.resolved):
            if hashes[r.block] != r.block_hash or (self._fork is not None and self._fork <= r.block):
                self._recheck(r)

    def _recheck(self, r: Resolved) -> None:
        receipt = self.chain.receipt(r.booked_hash)
        if receipt is not None and receipt["blockHash"] == r.block_hash:
            return  # the fork did not reach its block after all
        if receipt is not None and int(receipt["blockNumber"], 16) <= self.head:
            tx = self.chain.transaction(r.booked_hash)
            status = "replaced" if r.status == "replaced" else "mined" if receipt["status"] == "0x1" else "reverted"
            mid = self._mid(self.head)
            self.resolved.remove(r)
            self.book.apply(r.fills, -1)
            return self._resolve(r.flight, status, receipt, tx, again=True, mid=mid)
        book_values = self._book_values(self._mid(self.head), r.fills, -1)
        self.resolved.remove(r)
        self.book.apply(r.fills, -1)
        flight = replace(r.flight, status="reorged", since=self.head)
        self.in_flight[flight.nonce] = flight
        self.ledger.update(flight.row, status="reorged", mined_block=None, replaced_by=None, actual_base=None,
                           actual_quote=None, gas_eth=None, recon_base=None, recon_quote=None, recon_eth=None,
                           **book_values)
        self.echo(f"block {self.head}: {flight.kind} {r.booked_hash} {r.status} in block {r.block} is no longer "
                  f"on the chain (reorg): its fills are reversed and nonce {flight.nonce} is in flight again")

    def fills(self, receipt: dict, tx: dict) -> Fills:
        """The account's token and ETH deltas from a receipt: Transfer logs of base/quote to or from us,
        WETH Deposit/Withdrawal, the value sent, and gas (gasUsed x effectiveGasPrice)."""
        deltas = {token: 0 for token in self.tokens}
        eth = 0
        me = self.address[2:]
        for entry in receipt["logs"]:
            token, topics = entry["address"].lower(), entry["topics"]
            if token not in deltas or not topics:
                continue
            amount = int(entry["data"], 16) if entry["data"] not in ("0x", "") else 0
            if topics[0] == TRANSFER and len(topics) == 3:
                deltas[token] += amount * (topics[2].endswith(me)) - amount * (topics[1].endswith(me))
            elif topics[0] == DEPOSIT and topics[1].endswith(me):
                deltas[token] += amount
            elif topics[0] == WITHDRAWAL and topics[1].endswith(me):
                deltas[token] -= amount
                eth += amount
        gas = int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
        value = int(tx.get("value", "0x0"), 16) if receipt["status"] == "0x1" else 0
        return Fills(deltas[self.tokens[0]], deltas[self.tokens[1]], eth - gas - value, gas)

    # ------------------------------------------------------------------ reconciliation

    def _reconcile(self) -> None:
        """Compare the ledger's book with on-chain balances at the head; record and show any difference.

        A difference that stays at `mismatch_heads` consecutive heads with nothing in flight (so no
        transaction of ours explains it) trips the kill switch: the book can no longer be trusted.
        """
        base, quote, eth = self.chain.balances(self.tokens, self.address, self.head)
        self.onchain = (base, quote, eth)
        diff = (base - self.book.base, quote - self.book.quote, eth - self.book.eth)
        self.last_diff = {"recon_base": diff[0] / self.scale[0], "recon_quote": diff[1] / self.scale[1],
                          "recon_eth": diff[2] / 1e18}
        for row in self.ledger.rows:  # rows resolved at this head carry the check made right after them
            if row["status"] in ("mined", "reverted", "replaced", "dropped") and row["recon_base"] is None:
                row.update(self.last_diff)
        self.ledger.flush()
        self.mismatch_run = self.mismatch_run + 1 if any(diff) and not self.in_flight else 0
        if any(diff):
            self.mismatches.append({"block": self.head, **self.last_diff})
            message = (f"block {self.head}: RECONCILIATION MISMATCH on-chain minus ledger: "
                       f"{self.last_diff['recon_base']:+.8f} {self.runner.base_symbol}, "
                       f"{self.last_diff['recon_quote']:+.6f} {self.runner.quote_symbol}, "
                       f"{self.last_diff['recon_eth']:+.9f} ETH")
            log.warning(message)
            self.echo(message)
        if self.mismatch_run >= self.config.mismatch_heads and not self.kill.tripped():
            self.kill.trip("reconciliation mismatch")
            self.echo(f"block {self.head}: the mismatch persists at {self.mismatch_run} heads with nothing in "
                      f"flight: kill switch")

    # ------------------------------------------------------------------ deciding and sending

    def _decide(self) -> None:
        block = self.runner.decision_block(self.head)
        if block is None or block <= self.last_decided:
            return
        self.last_decided = block
        value = self.equity()
        features = self.runner.features_at(block)
        action = self.runner.act(features, self.position() * self.mid / value, self.cash() / value)
        qty = order_quantity(action, self.position(), self.trade_size, self.max_position)
        units = int(abs(qty) * self.scale[0])
        if action == SELL:  # the float round trip may ask for a few wei more than the book holds
            units = min(units, max(self._available()[0], 0))
        if units == 0:  # a hold (or an order the position limits cut to nothing): logged, nothing sent
            self.ledger.add(kind="decision", decision_block=block, action=ACTION_NAMES[action], status="hold",
                            position=self.position(), cash=self.cash(), equity=value, **self.last_diff)
            return
        row = self.ledger.add(kind="swap", decision_block=block, action=ACTION_NAMES[action], status="new",
                              intended_base=math.copysign(units / self.scale[0], qty))
        if self._swap_in_flight():
            return self._block(row, "in_flight")
        try:
            self._order(row, action, units)
        except ChainlakeError as exc:  # e.g. the quote's eth_call failed: the row says so, nothing was sent
            if self.ledger.rows[row]["status"] == "new":
                self.ledger.update(row, status="failed", error=self.redact(str(exc)), **self._book_values(self.mid))
            raise

    def _swap_in_flight(self) -> bool:
        return any(f.kind == "swap" for f in self.in_flight.values())

    def _order(self, row: int, action: int, units: int) -> None:
        block = self.chain.block(self.head)
        quote_units, bound, data = self._quote_swap(action, units, int(block["timestamp"], 16))
        base, quote = units / self.scale[0], quote_units / self.scale[1]
        signed_base = base if action == BUY else -base
        intended_quote = -quote if action == BUY else quote
        self.ledger.update(row, intended_quote=intended_quote, limit_quote=bound / self.scale[1])
        order = Order(signed_base, base * self.mid, self._impact(action, units))
        rule = check(order, self._risk_state(), self.config.limits)
        if rule is None and action == BUY and bound > self._available()[1]:
            rule = "insufficient_funds"
        if rule is None and action == SELL and units > self._available()[0]:
            rule = "insufficient_funds"
        if rule is not None:
            return self._block(row, rule)
        self._send(row, data, block, "swap")

    def _quote_swap(self, action: int, units: int, timestamp: int) -> tuple[int, int, str]:
        """(expected quote amount, on-chain bound, calldata): exact-in sells with amountOutMin =
        expected x (1 - max_slippage), exact-out buys with amountInMax = expected x (1 + max_slippage)."""
        base, quote = self.tokens
        slip = self.config.limits.max_slippage
        deadline = timestamp + self.config.deadline_seconds
        if action == SELL:
            (amounts,) = self.chain.call(self.router, "getAmountsOut(uint256,address[])", ["uint256[]"], units,
                                         [base, quote], block=self.head)
            bound = math.floor(amounts[-1] * (1 - slip))
            return amounts[-1], bound, encode_call(SWAP_EXACT_IN, units, bound, [base, quote], self.address, deadline)
        (amounts,) = self.chain.call(self.router, "getAmountsIn(uint256,address[])", ["uint256[]"], units,
                                     [quote, base], block=self.head)
        bound = math.ceil(amounts[0] * (1 + slip))
        return amounts[0], bound, encode_call(SWAP_EXACT_OUT, units, bound, [quote, base], self.address, deadline)

    def _impact(self, action: int, units: int) -> float:
        """Price impact of the order against the reserves at the head, pool fee excluded (constant product)."""
        reserve_base = self._reserves(self.head)[0]
        if action == BUY:
            return units / (reserve_base - units) if units < reserve_base else math.inf
        return units / (reserve_base + units)

    def _available(self) -> tuple[int, int]:
        """(base, quote) units the account can spend: the smaller of the ledger's book and the on-chain
        balances read at the head (a book that lags the chain, or the other way round, never overspends)."""
        return min(self.book.base, self.onchain[0]), min(self.book.quote, self.onchain[1])

    def _risk_state(self) -> RiskState:
        """The position the limits see: the larger of the book's and the chain's base at the head (a swap
        the book missed still counts), plus what is in flight."""
        in_flight = sum(self.ledger.rows[f.row]["intended_base"] or 0.0 for f in self.in_flight.values())
        held = max(self.book.base, self.onchain[0]) / self.scale[0]
        return RiskState(held + in_flight, self.net_value() - self.day_start, self.kill.tripped())

    def _block(self, row: int, rule: str) -> None:
        self.ledger.update(row, status=f"blocked:{rule}", **self._book_values(self.mid))
        r = self.ledger.rows[row]
        self.echo(f"block {self.head}: {r['action']} {abs(r['intended_base']):,.6f} {self.runner.base_symbol} "
                  f"for block {r['decision_block']} blocked by {rule}")

    def _send(self, row: int, data: str, block: dict, kind: str, gas: int | None = None, to: str | None = None) -> None:
        tx = {"type": 2, "chainId": self.chain_id, "nonce": self.nonce, "to": to or self.router, "value": 0,
              "gas": gas or self.config.gas_limit, "maxFeePerGas": self._max_fee(block),
              "maxPriorityFeePerGas": self.config.priority_fee, "data": data}
        if self.config.dry_run:
            self.ledger.update(row, status="dry_run", nonce=self.nonce, **self._book_values(self.mid))
            self.echo(f"block {self.head}: dry run, would send {describe(tx, self.address)}")
            return
        signed = self.wallet.sign(tx)
        try:
            tx_hash = self.chain.send_raw(signed.raw)
        except NodeError as exc:  # RpcError (the node's answer) or a transport error (no answer)
            return self._send_failed(row, kind, signed.hash, data, exc)
        self._sent(row, kind, tx_hash, data)

    def _sent(self, row: int, kind: str, tx_hash: str, data: str, status: str = "sent", note: str = "") -> None:
        self.in_flight[self.nonce] = InFlight(row, self.nonce, tx_hash, self.head, kind, status)
        self.ledger.update(row, status=status, tx_hash=tx_hash, nonce=self.nonce, sent_block=self.head,
                           error=note or None)
        self.echo(f"block {self.head}: {status} {kind} {tx_hash} nonce {self.nonce}: {describe_call(data)}"
                  + (f" ({note})" if note else ""))
        self.nonce += 1

    def _send_failed(self, row: int, kind: str, tx_hash: str, data: str, exc: NodeError) -> None:
        """eth_sendRawTransaction failed. Its hash is known here, so the node is asked whether it has the
        transaction anyway (the answer may be what was lost): if it does, the transaction is in flight; if
        the node said why it refused this transaction and does not have it, it is rejected; otherwise (no
        answer, "already known", or the look-up failing too) it is in flight as "unknown", and following
        it tells: mined, or dropped `drop_after_blocks` later."""
        message = self.redact(str(exc))
        try:
            known = self.chain.transaction(tx_hash) is not None or self.chain.receipt(tx_hash) is not None
            looked_up = True
        except NodeError:
            known, looked_up = False, False
        if known:
            return self._sent(row, kind, tx_hash, data, note=f"the node has it; the send failed: {message}")
        refused = isinstance(exc, RpcError) and "already known" not in message.lower()
        if refused and looked_up:
            return self._rejected(row, message)
        log.warning("block %s: the send of %s got no clear answer: %s", self.head, tx_hash, message)
        self._sent(row, kind, tx_hash, data, status="unknown", note=f"no clear answer to the send: {message}")

    def _rejected(self, row: int, message: str) -> None:
        try:
            self.nonce = self.chain.nonce(self.address, "pending")
        except NodeError:  # the refused transaction did not use its nonce: keep it
            pass
        self.ledger.update(row, status="rejected", error=message, **self._book_values(self.mid))
        log.warning("block %s: the node rejected the transaction: %s", self.head, message)
        self.echo(f"block {self.head}: rejected by the node: {message}; next nonce {self.nonce}")

    def _max_fee(self, block: dict) -> int:
        return 2 * int(block.get("baseFeePerGas") or "0x0", 16) + self.config.priority_fee

    # ------------------------------------------------------------------ the book

    def _reserves(self, block: int) -> tuple[int, int]:
        r0, r1, _ = self.chain.call(self.runner.pool, "getReserves()", ["uint112", "uint112", "uint32"], block=block)
        return (r0, r1) if self.runner.base_is_token0 else (r1, r0)

    def _mid(self, block: int) -> float:
        base, quote = self._reserves(block)
        return (quote / self.scale[1]) / (base / self.scale[0])

    def position(self) -> float:
        return self.book.base / self.scale[0]

    def cash(self) -> float:
        return self.book.quote / self.scale[1]

    def equity(self) -> float:
        """The token book at the pool's mid, in quote (ETH for gas is not part of it)."""
        return self.cash() + self.position() * self.mid

    def gas_quote(self) -> float:
        """Gas paid so far in quote when the pool prices ETH (a WETH side); else 0 (gas is then only in ETH)."""
        eth = self.book.gas_wei / 1e18
        if self.runner.base_symbol == "WETH":
            return eth * self.mid
        return eth if self.runner.quote_symbol == "WETH" else 0.0

    def net_value(self) -> float:
        return self.equity() - self.gas_quote()

    def _book_values(self, mid: float, fills: Fills | None = None, sign: int = 1) -> dict:
        """The book's position, cash and equity at `mid` (after `fills`, applied `sign` times, if given)."""
        base = self.book.base + (sign * fills.base if fills else 0)
        quote = self.book.quote + (sign * fills.quote if fills else 0)
        position, cash = base / self.scale[0], quote / self.scale[1]
        return {"position": position, "cash": cash, "equity": cash + position * mid}

    def _day(self, block: int) -> str:
        return datetime.fromtimestamp(int(self.chain.block(block)["timestamp"], 16), timezone.utc).date().isoformat()

    def _roll_day(self) -> None:
        day = self._day(self.head)
        if day != self.day:
            self.day, self.day_start = day, self.net_value()

    # ------------------------------------------------------------------ end

    def report(self) -> LiveReport:
        statuses = Counter(r["status"] for r in self.ledger.rows if r["kind"] == "swap")
        return LiveReport(
            run_id=self.run_id, policy=self.runner.name, version=self.runner.version, pool=self.runner.pool,
            address=self.address, chain_id=self.chain_id, first_head=self.first_head, last_head=self.head,
            start_equity=self.start_equity, end_equity=self.equity(), pnl=self.net_value() - self.start_equity,
            gas_eth=self.book.gas_wei / 1e18, statuses=dict(statuses), reconciled=not self.mismatches,
            mismatches=list(self.mismatches), killed=self.kill.reason if self.killed_at is not None else None,
            in_flight=len(self.in_flight), stopped=self.stopped,
            ledger_path=self.ledger.path if self.ledger.rows else None, rows=[dict(r) for r in self.ledger.rows])

    def close(self) -> None:
        self.chain.close()
        if self._follow_client is not None:
            self._follow_client.close()

    def __enter__(self) -> "LiveTrader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_URL = re.compile(r"\b(?:https?|wss?)://[^\s'\"<>]+", re.IGNORECASE)


def _origin_of_match(match: re.Match) -> str:
    url = match.group(0)
    trail = len(url) - len(url.rstrip(".,;:!?)]}"))
    return node_origin(url[:len(url) - trail]) + url[len(url) - trail:]


def guard_chain_id(chain_id: int, config: LiveConfig) -> None:
    """Only the devnet's chain id is traded without asking; any other needs `allow_chain_id` to name it
    (dry runs send nothing, so they may look at any chain)."""
    if chain_id == DEVNET_CHAIN_ID or config.dry_run or config.allow_chain_id == chain_id:
        return
    raise ConfigError(f"the node's chain id is {chain_id}, not the devnet's ({DEVNET_CHAIN_ID}): refusing to send "
                      f"real transactions; pass --allow-chain-id {chain_id} to confirm, or --dry-run")


def describe_call(data: str) -> str:
    """A router swap's calldata as `name(arg=value, ...)`, for humans."""
    from chainlake.devnet.rpc import decode_call, selector

    swaps = ((SWAP_EXACT_IN, ("amountIn", "amountOutMin")), (SWAP_EXACT_OUT, ("amountOut", "amountInMax")))
    for signature, names in swaps:
        if data.startswith(selector(signature)):
            a, b, path, to, deadline = decode_call(signature, data)
            return (f"{signature.split('(')[0]}({names[0]}={a}, {names[1]}={b}, path={list(path)}, to={to}, "
                    f"deadline={deadline})")
    return f"calldata {data[:10]}… ({(len(data) - 2) // 2} bytes)"


def describe(tx: dict, sender: str) -> str:
    """Every field of an unsigned transaction (what dry-run prints; there is no key in it)."""
    fields = {"from": sender, **{k: v for k, v in tx.items() if k != "data"}}
    return (", ".join(f"{k}={v}" for k, v in fields.items()) + f", call {describe_call(tx['data'])}, "
            f"data={tx['data']}")


def run_live(rpc_url: str, wallet: Wallet, runner, router: str, lake_dir: str | Path | None, *,
             blocks: int | None = None, config: LiveConfig | None = None, kill_file: str | Path | None = None,
             echo: Callable[[str], None] = print, advance: Callable[[], Any] | None = None) -> LiveReport:
    """Trade `blocks` new heads (None: until the kill switch); the run's report.

    New heads are polled every `config.poll_seconds`, or, with `advance`, made by calling it (e.g.
    `lambda: devnet.run(1)` on a devnet the caller drives). The kill switch (the file, or SIGINT / SIGTERM /
    SIGUSR1) stops new orders at once. Either way the loop then follows the transactions still in flight
    until they resolve (at most `drop_after_blocks` + 2 more heads), so the report's book is settled.
    Node errors at `config.max_failed_heads` consecutive heads stop the run at once (the report says so and
    lists what is still in flight; the ledger is written at every change).
    """
    config = config or LiveConfig()
    kill = KillSwitch(Path(kill_file) if kill_file else None)
    with kill, LiveTrader(rpc_url, wallet, runner, router, lake_dir, config, kill, echo) as trader:
        trader.start()
        heads = 0
        while ((blocks is None or heads < blocks) and not (trader.killed_at is not None and not trader.in_flight)
               and trader.stopped is None):
            heads += _next_head(trader, kill, config, advance)
        extra = 0
        while trader.in_flight and extra < config.drop_after_blocks + 2 and trader.stopped is None:
            extra += _next_head(trader, kill, config, advance, decide=False)
        report = trader.report()
    echo(report.summary())
    return report


def _next_head(trader: LiveTrader, kill: KillSwitch, config: LiveConfig, advance, decide: bool = True) -> int:
    """One step of the loop: 1 if a new head was handled, else 0 (after waiting or advancing the chain)."""
    if trader.step(decide) is not None:
        return 1
    if advance is not None:
        advance()
    else:
        kill.wait(trader.retry_seconds())
    return 0


def run_policy_live(lake_dir: str | Path, rpc_url: str, policy: str, wallet: Wallet, router: str, *,
                    version: str | None = None, models_dir: str | Path | None = None, **options) -> LiveReport:
    """`run_live` with a stored policy (`rl.trader.PolicyRunner` over `lake_dir`): what the CLI and the demo call."""
    from rl.policy_store import DEFAULT_MODELS
    from rl.trader import PolicyRunner

    runner = PolicyRunner(lake_dir, policy, version=version, models_dir=models_dir or DEFAULT_MODELS)
    return run_live(rpc_url, wallet, runner, router, lake_dir, **options)


__all__ = ["LEDGER", "LiveConfig", "LiveReport", "LiveTrader", "describe", "guard_chain_id",
           "run_live", "run_policy_live"]
