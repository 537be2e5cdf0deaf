"""RpcClient against a tiny scripted HTTP server on 127.0.0.1 (bounded: every script is finite)."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from chainlake.errors import ConfigError, MethodUnsupported, NodeError
from chainlake.rpc import RpcClient, RpcError, validate_url

FAST = {"backoff": 0.001, "max_backoff": 0.01}


class ScriptedNode:
    """Answers POSTs from a script of (status, body or callable(request) -> body, headers)."""

    def __init__(self, script=(), default=None, delay: float = 0.0):
        self.script = deque(script)
        self.default = default
        self.delay = delay
        self.requests: list = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with node.lock:
                    node.requests.append(orjson.loads(body))
                    node.in_flight += 1
                    node.max_in_flight = max(node.max_in_flight, node.in_flight)
                    step = node.script.popleft() if node.script else node.default
                time.sleep(node.delay)
                status, answer, headers = step
                data = answer(orjson.loads(body)) if callable(answer) else answer
                data = data if isinstance(data, bytes) else orjson.dumps(data)
                with node.lock:
                    node.in_flight -= 1
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def ok(result):
    """A JSON-RPC success answer for a single call or every call of a batch."""
    def answer(request):
        if isinstance(request, list):
            return [{"jsonrpc": "2.0", "id": r["id"], "result": result} for r in request]
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}
    return (200, answer, None)


def rpc_error(code, message):
    def answer(request):
        one = lambda r: {"jsonrpc": "2.0", "id": r["id"], "error": {"code": code, "message": message}}
        return [one(r) for r in request] if isinstance(request, list) else one(request)
    return (200, answer, None)


def test_retries_429_500_garbage_then_succeeds():
    script = [(429, b"slow down", None), (500, b"oops", None), (200, b"<html>proxy error</html>", None),
              (503, b"", None), ok("0x2a")]
    with ScriptedNode(script) as node, RpcClient(node.url, max_retries=5, **FAST) as client:
        assert client.call("eth_blockNumber") == "0x2a"
        assert len(node.requests) == 5


def test_gives_up_after_max_retries_with_the_reason():
    with ScriptedNode(default=(500, b"down", None)) as node, RpcClient(node.url, max_retries=3, **FAST) as client:
        with pytest.raises(NodeError, match="4 attempts: HTTP 500"):
            client.call("eth_blockNumber")
        assert len(node.requests) == 4


def test_backoff_grows_exponentially_with_jitter():
    with ScriptedNode(default=(429, b"", None)) as node, \
            RpcClient(node.url, max_retries=3, backoff=0.02, max_backoff=1.0) as client:
        started = time.monotonic()
        with pytest.raises(NodeError):
            client.call("eth_blockNumber")
        elapsed = time.monotonic() - started
    # sleeps of 0.02, 0.04, 0.08 scaled by a jitter in [0.5, 1]: between 0.07 and 0.14 s (+ overhead)
    assert 0.065 <= elapsed < 1.0
    assert client._delay(10, None) <= 1.0  # capped by max_backoff


def test_retry_after_header_is_honoured():
    script = [(429, b"", {"Retry-After": "0.2"}), ok("0x1")]
    with ScriptedNode(script) as node, RpcClient(node.url, backoff=0.001, max_backoff=0.3) as client:
        started = time.monotonic()
        assert client.call("eth_chainId") == "0x1"
        assert time.monotonic() - started >= 0.1  # 0.2 s scaled by jitter >= 0.5


def test_method_errors_are_not_retried():
    with ScriptedNode(default=rpc_error(-32602, "invalid params")) as node, RpcClient(node.url, **FAST) as client:
        with pytest.raises(RpcError, match="eth_getLogs failed on the node: invalid params"):
            client.call("eth_getLogs", [{}])
        assert len(node.requests) == 1


def test_rate_limit_error_inside_a_200_is_retried():
    script = [rpc_error(-32005, "limit exceeded"), ok("0x5")]
    with ScriptedNode(script) as node, RpcClient(node.url, **FAST) as client:
        assert client.call("eth_blockNumber") == "0x5"
        assert len(node.requests) == 2


def test_require_names_method_and_dataset_and_probes_once():
    with ScriptedNode(default=rpc_error(-32601, "Method not found")) as node, RpcClient(node.url, **FAST) as client:
        with pytest.raises(MethodUnsupported, match="does not serve trace_block, needed by dataset 'traces'"):
            client.require("trace_block", "traces")
        with pytest.raises(MethodUnsupported):
            client.require("trace_block", "traces")
        assert len(node.requests) == 1
        with pytest.raises(MethodUnsupported, match="serves none of trace_block, debug_traceBlockByNumber"):
            client.first_supported(["trace_block", "debug_traceBlockByNumber"], "traces")


def test_params_error_on_probe_means_supported():
    with ScriptedNode(default=rpc_error(-32000, "genesis is not traceable")) as node, RpcClient(node.url) as client:
        client.require("debug_traceBlockByNumber", "traces")
        assert client.supports("debug_traceBlockByNumber")


def test_batches_are_matched_by_id_and_split():
    def reversed_answer(request):
        return [{"jsonrpc": "2.0", "id": r["id"], "result": r["params"][0]} for r in reversed(request)]
    with ScriptedNode(default=(200, reversed_answer, None)) as node, RpcClient(node.url, batch_size=3) as client:
        calls = [("echo", [i]) for i in range(10)]
        assert client.batch(calls) == list(range(10))
        assert sorted(len(r) for r in node.requests) == [1, 3, 3, 3]


def test_batch_with_one_failing_call_raises():
    def answer(request):
        return [{"jsonrpc": "2.0", "id": r["id"], "result": 1} if r["id"] else
                {"jsonrpc": "2.0", "id": r["id"], "error": {"code": 3, "message": "execution reverted"}}
                for r in request]
    with ScriptedNode(default=(200, answer, None)) as node, RpcClient(node.url) as client:
        with pytest.raises(RpcError, match="eth_call failed on the node: execution reverted"):
            client.batch([("eth_call", []), ("eth_call", [])])


def test_concurrency_is_bounded():
    with ScriptedNode(default=ok("0x1"), delay=0.05) as node, \
            RpcClient(node.url, max_concurrency=2, batch_size=1) as client:
        client.batch([("eth_chainId", [])] * 8)
        assert node.max_in_flight == 2


def test_requests_per_second_limit():
    with ScriptedNode(default=ok("0x1")) as node, \
            RpcClient(node.url, requests_per_second=50, batch_size=5, max_concurrency=4) as client:
        started = time.monotonic()
        client.batch([("eth_chainId", [])] * 20)  # 20 calls at 50/s: the last batch starts >= 0.3 s in
        assert time.monotonic() - started >= 0.29


def test_unreachable_node_is_one_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        with RpcClient(f"http://127.0.0.1:{port}", **FAST) as client:
            started = time.monotonic()
            with pytest.raises(NodeError, match="cannot reach the node"):
                client.probe()
            assert time.monotonic() - started < 2


def test_probe_rejects_a_server_that_is_not_a_node():
    with ScriptedNode(default=(200, b'{"hello": "world"}', None)) as node, \
            RpcClient(node.url, max_retries=1, **FAST) as client:
        with pytest.raises(NodeError, match="unreadable answer"):
            client.probe()


def test_http_errors_that_are_not_transient():
    with ScriptedNode(default=(401, b"unauthorized", None)) as node, RpcClient(node.url, **FAST) as client:
        with pytest.raises(NodeError, match="HTTP 401"):
            client.call("eth_chainId")
        assert len(node.requests) == 1


@pytest.mark.parametrize("url", ["", None, "localhost:8545", "ftp://host", "http://", "http:///x",
                                 "http://host:notaport", "ws://127.0.0.1:8545"])
def test_bad_urls(url):
    with pytest.raises(ConfigError, match="RPC URL"):
        validate_url(url)


def test_good_urls():
    assert validate_url(" https://eth.example/v2/key ") == "https://eth.example/v2/key"
    assert validate_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"


def test_bad_options():
    with pytest.raises(ConfigError):
        RpcClient("http://127.0.0.1:1", max_concurrency=0)
    with pytest.raises(ConfigError):
        RpcClient("http://127.0.0.1:1", requests_per_second=-1)
