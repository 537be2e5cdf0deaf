"""Contract metadata read over `eth_call`, once per contract, cached in the lake.

The one place where decoding asks the node (everything else reads the raw lake):

- ``LAKE/tokens/data.parquet``: `decimals()` and `symbol()` of every token a decoded table needs. A call
  that reverts or returns nothing gives null (the token is still cached: it is not asked again). Symbols
  are ABI strings, or bytes32 for old tokens like MKR (right-padded text);
- ``LAKE/pools/data.parquet``: `token0()` / `token1()` of every pool that emitted a Uniswap V2 or V3
  event; `protocol` is the ABI of the event that revealed the pool.

Why `eth_call` and not the factories' `PairCreated`/`PoolCreated` logs: any contract can emit a
`PairCreated` naming any pair, so those logs are only trustworthy from a known factory, and they lie in
the factory's (often much earlier) blocks, outside the range being decoded. The pool contract itself is
the authority and costs two calls per pool, once. It works the same on the devnet (whose pairs answer
`token0()`/`token1()` like Uniswap's) and on mainnet.

Calls go to the latest block: decimals, symbols and pool tokens are immutable in every standard contract.
Writes hold the folder's lock and rename atomically, so concurrent decodes never lose an entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq

from chainlake.decode.schemas import METADATA_SCHEMAS
from chainlake.errors import ConfigError
from chainlake.ingest.lake import DATA_FILE, partition_lock, read_lake_config, to_table, write_parquet_atomic
from chainlake.rpc import RpcClient, RpcError, raise_for_error

SELECTORS = {"decimals": "0x313ce567", "symbol": "0x95d89b41", "token0": "0x0dfe1681", "token1": "0xd21220a7",
             "fee": "0xddca3f43"}
V3_PROTOCOL = "uniswap_v3"  # the protocol whose pools answer fee() (uint24, in millionths)


def metadata_path(lake_dir: str | Path, table: str) -> Path:
    return Path(lake_dir) / table / DATA_FILE


def read_metadata(lake_dir: str | Path, table: str) -> pl.DataFrame:
    """The cached `tokens` or `pools` table (empty when nothing is cached yet)."""
    schema = METADATA_SCHEMAS[table]
    path = metadata_path(lake_dir, table)
    arrow = pq.read_table(path, schema=schema) if path.exists() else schema.empty_table()
    return pl.from_arrow(arrow)


def eth_call_all(client: RpcClient, calls: list[tuple[str, str]], block: str = "latest") -> list[str | None]:
    """`eth_call` each (to, data) in batches; the result hex, or None when the call reverted or failed.

    Rate limits are retried and an unsupported `eth_call` raises, as everywhere else in the client.
    """
    rpc_calls = [("eth_call", [{"to": to, "data": data}, block]) for to, data in calls]

    def parse(body: bytes, sent) -> list[str | None]:
        doc = orjson.loads(body)
        if isinstance(doc, dict):
            if doc.get("error") is not None:
                raise_for_error("eth_call", doc["error"])
            raise ValueError("batch answered with a single object")
        if not isinstance(doc, list) or len(doc) != len(sent):
            raise ValueError("batch answer has the wrong length")
        out: list[str | None] = [None] * len(sent)
        for item in doc:
            i = item.get("id")
            if not isinstance(i, int) or not 0 <= i < len(sent):
                raise ValueError("batch answer has an unknown id")
            if item.get("error") is not None:
                try:
                    raise_for_error("eth_call", item["error"])
                except RpcError:  # reverted / bad call: an answer about this contract
                    continue
            result = item.get("result")
            out[i] = result if isinstance(result, str) else None
        return out

    chunks = client.map(rpc_calls, parse)
    return [r for chunk in chunks for r in chunk]


def decode_uint(result: str | None, bits: int) -> int | None:
    """A `uintN` answer (`decimals()`: uint8, V3 `fee()`: uint24): one word holding a value that fits, else
    None (a revert, an empty answer, or garbage from a contract that is not what we asked)."""
    if not result or len(result) < 66:
        return None
    try:
        value = int(result[2:66], 16)
    except ValueError:
        return None
    return value if value < 1 << bits else None


def decode_uint8(result: str | None) -> int | None:
    """A `decimals()` answer: one word holding 0..255, else None."""
    return decode_uint(result, 8)


def decode_text(result: str | None) -> str | None:
    """A `symbol()` answer: an ABI `string`, or a right-padded `bytes32` (MKR, SAI); None if neither."""
    if not result or len(result) < 66:
        return None
    try:
        raw = bytes.fromhex(result[2:])
    except ValueError:
        return None
    text: bytes | None = None
    if len(raw) >= 64:
        offset = int.from_bytes(raw[:32], "big")
        if offset + 32 <= len(raw):
            length = int.from_bytes(raw[offset:offset + 32], "big")
            if offset + 32 + length <= len(raw):
                text = raw[offset + 32:offset + 32 + length]
    if text is None and len(raw) == 32:
        text = raw
    if text is None:
        return None
    text = text.rstrip(b"\x00")
    return text.decode("utf-8", errors="replace") if text else None


def decode_address(result: str | None) -> str | None:
    if not result or len(result) != 66 or result[2:26].strip("0"):
        return None
    return "0x" + result[26:].lower()


class Metadata:
    """Tokens' and pools' metadata for one lake; asks the node only for contracts not cached yet.

    `client` is a factory called at most once, the first time something is missing, so decoding a range
    whose contracts are all cached needs no node at all.

    What was read is kept in memory for the object's lifetime: entries never change (immutable contract
    facts, see the module docstring), so the lake files are read again only when a contract unknown to
    memory is asked for (another writer may have added it meanwhile), and the node only when the lake
    lacks it too. A long-lived instance (the online engine's) thus decodes a block without any file read.
    """

    def __init__(self, lake_dir: str | Path, client: Callable[[], RpcClient] | None):
        self.lake_dir = Path(lake_dir)
        self._factory = client
        self._client: RpcClient | None = None
        self._memory: dict[str, tuple[pl.DataFrame, dict[str, list[int]]]] = {}  # table, its rows by key

    def chain_id(self) -> int | None:
        """The lake's chain (from its `_lake.json`, read once; None for a lake without one)."""
        if "chain_id" not in self._memory:
            config = read_lake_config(self.lake_dir)
            self._memory["chain_id"] = None if config is None else config.chain_id
        return self._memory["chain_id"]

    def client(self) -> RpcClient:
        if self._client is None:
            if self._factory is None:
                raise ConfigError("token or pool metadata is missing from the lake and no node was given: "
                                  "pass --rpc-url or set ETH_RPC_URL")
            self._client = self._factory()
            config = read_lake_config(self.lake_dir)
            chain_id = self._client.chain_id()
            if config is not None and config.chain_id != chain_id:
                raise ConfigError(f"lake {self.lake_dir} holds chain {config.chain_id} but the node serves chain "
                                  f"{chain_id}: token metadata must come from the lake's chain")
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def tokens(self, addresses: Iterable[str | None]) -> pl.DataFrame:
        """token, decimals, symbol for every address asked (read from the node once, then cached)."""
        wanted = sorted({a for a in addresses if a})
        return self._ensure("tokens", wanted, self._read_tokens)

    def pools(self, pools: dict[str, str]) -> pl.DataFrame:
        """pool, protocol, token0, token1 for every pool asked ({address: protocol})."""
        return self._ensure("pools", sorted(pools), lambda missing: self._read_pools(missing, pools))

    def _ensure(self, table: str, wanted: list[str], read: Callable[[list[str]], pl.DataFrame]) -> pl.DataFrame:
        key = "token" if table == "tokens" else "pool"
        cached, rows = self._memory.get(table, (None, {}))
        if cached is None or not all(k in rows for k in wanted):
            cached = self._load(table, key, wanted, read)
            rows = {}
            for i, k in enumerate(cached[key].to_list()):
                rows.setdefault(k, []).append(i)
            self._memory[table] = (cached, rows)
        if not wanted:
            return cached.clear()
        # The wanted rows by position, in the table's order: a filter query would cost ~0.2 ms, paid by the
        # online path on every block for every decoded table.
        return cached.gather(sorted(i for k in wanted for i in rows.get(k, ())))

    def _load(self, table: str, key: str, wanted: list[str], read: Callable[[list[str]], pl.DataFrame]) -> pl.DataFrame:
        """The lake's table with every `wanted` entry, those missing read from the node and written first."""
        cached = read_metadata(self.lake_dir, table)
        missing = sorted(set(wanted) - set(cached[key].to_list()))
        if not missing:
            return cached
        fresh = read(missing)
        path = metadata_path(self.lake_dir, table)
        with partition_lock(path.parent):  # another writer may have added entries meanwhile
            current = read_metadata(self.lake_dir, table)
            fresh = fresh.filter(~pl.col(key).is_in(current[key].implode()))
            merged = pl.concat([current, fresh], how="vertical_relaxed").sort(key)
            write_parquet_atomic(path, to_table(merged, METADATA_SCHEMAS[table]))
        return merged

    def _read_tokens(self, tokens: list[str]) -> pl.DataFrame:
        calls = [(t, SELECTORS[f]) for t in tokens for f in ("decimals", "symbol")]
        results = eth_call_all(self.client(), calls)
        return pl.DataFrame({
            "token": tokens,
            "decimals": [decode_uint8(r) for r in results[0::2]],
            "symbol": [decode_text(r) for r in results[1::2]],
        }, schema={"token": pl.String, "decimals": pl.Int64, "symbol": pl.String})

    def _read_pools(self, pools: list[str], protocols: dict[str, str]) -> pl.DataFrame:
        v3 = [p for p in pools if protocols[p] == V3_PROTOCOL]
        calls = [(p, SELECTORS[f]) for p in pools for f in ("token0", "token1")] + [(p, SELECTORS["fee"]) for p in v3]
        results = eth_call_all(self.client(), calls)
        fees = dict(zip(v3, (decode_uint(r, 24) for r in results[2 * len(pools):])))
        return pl.DataFrame({
            "pool": pools, "protocol": [protocols[p] for p in pools],
            "token0": [decode_address(r) for r in results[0:2 * len(pools):2]],
            "token1": [decode_address(r) for r in results[1:2 * len(pools):2]],
            "fee": [fees.get(p) for p in pools],
        }, schema={"pool": pl.String, "protocol": pl.String, "token0": pl.String, "token1": pl.String,
                   "fee": pl.Int64})
