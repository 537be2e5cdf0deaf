"""Batched JSON-RPC over HTTP for bulk extraction.

Why not web3: web3 formats every object in Python. Ingestion instead sends JSON-RPC *batches* and hands the
raw response bytes to a native parser (polars / orjson), so rows never become Python objects.

What this client does, and why:
- bounded concurrency: a private thread pool of `max_concurrency` workers; the GIL is released while
  waiting on sockets and while polars parses, so threads overlap network, node and parsing;
- optional requests-per-second pacing for hosted nodes (every call inside a batch counts as one request);
- retries with exponential backoff and jitter on transient failures only: timeouts, connection errors,
  HTTP 429 / 5xx, a rate-limit JSON-RPC error, and unparsable bodies. A JSON-RPC method error (bad params,
  reverted call) is an answer, not a failure, and is never retried;
- capability detection: `require(method, dataset)` probes a method once and raises `MethodUnsupported`
  naming the method and the dataset that needs it.

No module-level state: every connection belongs to an `RpcClient` and is closed with it.
"""

from __future__ import annotations

import io
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson
import polars as pl

from chainlake.errors import ConfigError, MethodUnsupported, NodeError

T = TypeVar("T")
Call = tuple[str, Sequence[Any]]

ERROR_DTYPE = pl.Struct({"code": pl.Int64, "message": pl.String})
# Codes some hosted nodes use to say "slow down" inside an HTTP 200 answer.
RATE_LIMIT_CODES = {429, -32005, -32029}
_UNSUPPORTED = re.compile(
    r"method not found|not supported|unsupported|does not exist|not available|unknown method|not allowed|"
    r"not enabled|disabled", re.IGNORECASE,
)
_RATE_LIMITED = re.compile(r"rate.?limit|too many requests|exceeded .*(capacity|limit)", re.IGNORECASE)
ZERO_ADDRESS = "0x" + "00" * 20
# Cheap calls used to detect whether a node serves a method (genesis, or no-op arguments).
PROBE_PARAMS: dict[str, list[Any]] = {
    "eth_getBlockByNumber": ["0x0", False],
    "eth_getBlockReceipts": ["0x0"],
    "eth_getTransactionReceipt": ["0x" + "00" * 32],
    "eth_getLogs": [{"fromBlock": "0x0", "toBlock": "0x0"}],
    "eth_getBalance": [ZERO_ADDRESS, "0x0"],
    "eth_call": [{"to": ZERO_ADDRESS, "data": "0x"}, "0x0"],
    "trace_block": ["0x0"],
    "debug_traceBlockByNumber": ["0x0", {"tracer": "callTracer"}],
}


def validate_url(url: str | None) -> str:
    """Check that `url` is an http(s) URL with a host; raise one clear ConfigError otherwise."""
    if not url or not isinstance(url, str):
        raise ConfigError("no RPC URL given: pass --rpc or set ETH_RPC_URL")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"bad RPC URL {url!r}: the scheme must be http or https")
    try:
        host, _port = parts.hostname, parts.port  # .port raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"bad RPC URL {url!r}: invalid port") from None
    if not host:
        raise ConfigError(f"bad RPC URL {url!r}: no host")
    return url.strip()


class RpcError(NodeError):
    """The node answered a call with a JSON-RPC error (not retried: it is an answer)."""

    def __init__(self, method: str, code: int | None, message: str):
        self.method, self.code, self.rpc_message = method, code, message
        super().__init__(f"{method} failed on the node: {message} (code {code})")


class _Retry(Exception):
    """Internal: a transient failure worth another attempt; `reason` is shown if attempts run out."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason, self.wait = reason, wait


class _Pacer:
    """Requests-per-second limit shared by all worker threads (a simple leaky bucket)."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self, n: int) -> None:
        if not self.rate:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + n / self.rate
        if start > now:
            time.sleep(start - now)


class RpcClient:
    """A JSON-RPC client for one node. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 60.0,
        max_concurrency: int = 4,
        batch_size: int = 50,
        requests_per_second: float | None = None,
        max_retries: int = 5,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        headers: dict[str, str] | None = None,
    ):
        self.url = validate_url(url)
        if max_concurrency < 1 or batch_size < 1 or max_retries < 0:
            raise ConfigError("max_concurrency and batch_size must be >= 1 and max_retries >= 0")
        if requests_per_second is not None and requests_per_second <= 0:
            raise ConfigError("requests_per_second must be positive")
        self.max_concurrency, self.batch_size = max_concurrency, batch_size
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._pacer = _Pacer(requests_per_second)
        self._http = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            headers={"content-type": "application/json", **(headers or {})},
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._capabilities: dict[str, bool] = {}
        self._ids = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._http.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------
    def post(self, payload: Any, parse: Callable[[bytes], T], *, n_calls: int = 1, retries: int | None = None) -> T:
        """POST one JSON payload and parse the body, retrying transient failures with backoff + jitter.

        `parse` runs inside the retry loop so an unparsable body (garbage from a proxy) is retried too.
        """
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        retries = self.max_retries if retries is None else retries
        for attempt in range(retries + 1):
            self._pacer.acquire(n_calls)
            try:
                return self._attempt(body, parse)
            except _Retry as exc:
                if attempt == retries:
                    raise NodeError(f"node at {self.url} failed after {retries + 1} attempts: {exc.reason}") from None
                time.sleep(self._delay(attempt, exc.wait))
        raise AssertionError("unreachable")

    def _attempt(self, body: bytes, parse: Callable[[bytes], T]) -> T:
        try:
            resp = self._http.post(self.url, content=body)
        except httpx.ConnectError as exc:
            raise _Retry(f"cannot reach the node (connection failed: {exc})") from None
        except httpx.TimeoutException:
            raise _Retry("request timed out") from None
        except httpx.TransportError as exc:
            raise _Retry(f"connection error: {type(exc).__name__}: {exc}") from None
        status = resp.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", _retry_after(resp))
        content = resp.content
        if status != 200 and not content.lstrip().startswith((b"{", b"[")):
            raise NodeError(f"node at {self.url} answered HTTP {status}: {content[:200].decode(errors='replace')}")
        try:
            return parse(content)
        except (NodeError, ConfigError, _Retry):
            raise
        except Exception as exc:  # a body the parser cannot read: treat like a dropped connection
            snippet = content[:80].decode(errors="replace")
            raise _Retry(f"unreadable answer ({type(exc).__name__}): {snippet!r}") from None

    def _delay(self, attempt: int, wait: float | None) -> float:
        base = min(self.max_backoff, self.backoff * (2**attempt))
        if wait is not None:
            base = min(self.max_backoff, max(base, wait))
        return base * (0.5 + random.random() / 2)

    # -- JSON-RPC ----------------------------------------------------------------------------------
    def call(self, method: str, params: Sequence[Any] = (), *, retries: int | None = None) -> Any:
        """One call; returns its `result` or raises RpcError / MethodUnsupported."""
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return self.post(payload, lambda b: _single_result(method, orjson.loads(b)), retries=retries)

    def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Many calls, split into batches sent concurrently; results in the order of `calls`."""
        chunks = self.map(calls, lambda body, sent: _batch_results(sent, orjson.loads(body)))
        return [r for chunk in chunks for r in chunk]

    def frames(self, calls: Sequence[Call], result_dtype: pl.DataType,
               then: Callable[[pl.DataFrame], T] | None = None) -> list[T]:
        """Many calls parsed natively: each batch becomes a DataFrame (`id`, `result`), in call order.

        `then` post-processes each frame inside the worker thread (parsing overlaps the network).
        """
        def parse(body: bytes, sent: Sequence[Call]):
            frame = read_batch_frame(body, result_dtype, sent)
            return then(frame) if then else frame
        return self.map(calls, parse)

    def map(self, calls: Sequence[Call], parse: Callable[[bytes, Sequence[Call]], T]) -> list[T]:
        """Send `calls` in batches of `batch_size` over the worker pool; parse each body in its worker."""
        chunks = [list(calls[i:i + self.batch_size]) for i in range(0, len(calls), self.batch_size)]
        if not chunks:
            return []

        def work(chunk: list[Call]) -> T:
            payload = b"[" + b",".join(_request(i, m, p) for i, (m, p) in enumerate(chunk)) + b"]"
            return self.post(payload, lambda body: parse(body, chunk), n_calls=len(chunk))

        if len(chunks) == 1:
            return [work(chunks[0])]
        return list(self._executor().map(work, chunks))

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="chainlake-rpc")
            return self._pool

    # -- node facts and capabilities -----------------------------------------------------------------
    def chain_id(self) -> int:
        return int(self.call("eth_chainId"), 16)

    def block_number(self) -> int:
        return int(self.call("eth_blockNumber"), 16)

    def probe(self) -> tuple[int, int]:
        """Check the node answers (few quick retries so a dead URL fails fast); return (chain id, head)."""
        retries = min(self.max_retries, 2)
        payload = [
            {"jsonrpc": "2.0", "id": 0, "method": "eth_chainId", "params": []},
            {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        ]
        sent = [("eth_chainId", []), ("eth_blockNumber", [])]
        try:
            chain_id, head = self.post(payload, lambda b: _batch_results(sent, orjson.loads(b)), n_calls=2,
                                       retries=retries)
        except MethodUnsupported:
            raise
        except RpcError as exc:
            raise NodeError(f"{self.url} does not look like an Ethereum JSON-RPC node: {exc}") from None
        if not isinstance(chain_id, str) or not isinstance(head, str):
            raise NodeError(f"{self.url} does not look like an Ethereum JSON-RPC node: bad eth_chainId answer")
        return int(chain_id, 16), int(head, 16)

    def supports(self, method: str) -> bool:
        """Probe `method` once (cached): False only when the node says it does not know it."""
        if method not in self._capabilities:
            try:
                self.call(method, PROBE_PARAMS.get(method, []))
                self._capabilities[method] = True
            except MethodUnsupported:
                self._capabilities[method] = False
            except RpcError:
                self._capabilities[method] = True  # it answered with a params/state error: it exists
        return self._capabilities[method]

    def require(self, method: str, dataset: str | None = None) -> None:
        """Raise MethodUnsupported, naming the method and the dataset that needs it, if not served."""
        if not self.supports(method):
            need = f", needed by dataset {dataset!r}" if dataset else ""
            raise MethodUnsupported(f"the node at {self.url} does not serve {method}{need}")

    def first_supported(self, methods: Sequence[str], dataset: str | None = None) -> str:
        """The first of several alternative methods the node serves (e.g. trace_block, else debug_*)."""
        for method in methods:
            if self.supports(method):
                return method
        need = f", needed by dataset {dataset!r}" if dataset else ""
        raise MethodUnsupported(f"the node at {self.url} serves none of {', '.join(methods)}{need}")


# -- helpers (pure functions: easy to test) ------------------------------------------------------------
def _request(i: int, method: str, params: Sequence[Any]) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": list(params)})


def _retry_after(resp: httpx.Response) -> float | None:
    try:
        return float(resp.headers.get("retry-after", ""))
    except ValueError:
        return None


def raise_for_error(method: str, error: Any) -> None:
    """Turn a JSON-RPC error object into the right exception (rate limits become retries)."""
    if not isinstance(error, dict):
        raise RpcError(method, None, str(error))
    code, message = error.get("code"), str(error.get("message", ""))
    if code in RATE_LIMIT_CODES or _RATE_LIMITED.search(message):
        raise _Retry(f"rate limited by the node: {message}")
    if code == -32601 or _UNSUPPORTED.search(message):
        raise MethodUnsupported(f"the node does not serve {method}: {message}")
    raise RpcError(method, code, message)


def _single_result(method: str, doc: Any) -> Any:
    if isinstance(doc, list) and len(doc) == 1:
        doc = doc[0]
    if not isinstance(doc, dict) or ("result" not in doc and "error" not in doc):
        raise ValueError("not a JSON-RPC response")
    if doc.get("error") is not None:
        raise_for_error(method, doc["error"])
    return doc["result"]


def _batch_results(sent: Sequence[Call], doc: Any) -> list[Any]:
    if isinstance(doc, dict):  # the node refused the whole batch with one error
        if doc.get("error") is not None:
            raise_for_error(sent[0][0] if len(sent) == 1 else "batch", doc["error"])
        raise ValueError("batch answered with a single object")
    if not isinstance(doc, list) or len(doc) != len(sent):
        raise ValueError("batch answer has the wrong length")
    out: list[Any] = [None] * len(sent)
    for item in doc:
        i = item.get("id")
        if not isinstance(i, int) or not 0 <= i < len(sent):
            raise ValueError("batch answer has an unknown id")
        if item.get("error") is not None:
            raise_for_error(sent[i][0], item["error"])
        out[i] = item.get("result")
    return out


def read_batch_frame(body: bytes, result_dtype: pl.DataType, sent: Sequence[Call]) -> pl.DataFrame:
    """Parse a batch answer natively into columns `id`, `result` (sorted by id), raising on errors."""
    schema = {"id": pl.Int64, "result": result_dtype, "error": ERROR_DTYPE}
    frame = pl.read_json(io.BytesIO(body), schema=schema)
    errors = frame.filter(pl.col("error").is_not_null())
    if errors.height:
        first = errors.row(0, named=True)
        i = first["id"]
        method = sent[i][0] if isinstance(i, int) and 0 <= i < len(sent) else sent[0][0]
        raise_for_error(method, first["error"])
    if frame.height != len(sent):
        raise ValueError("batch answer has the wrong length")
    return frame.drop("error").sort("id")


def chunked(items: Iterable[T], size: int) -> list[list[T]]:
    """Split into lists of at most `size` items."""
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]
