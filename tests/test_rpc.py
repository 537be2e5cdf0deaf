"""RpcClient against a tiny scripted HTTP server on 127.0.0.1 (bounded: every script is finite)."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

import orjson
import pytest

from chainlake.errors import ConfigError, MethodUnsupported, NodeError
from chainlake.rpc import RpcClient, RpcError, validate_url
from local_http import LocalHttpServer

FAST = {"backoff": 0.001, "max_backoff": 0.01}


class ScriptedNode(LocalHttpServer):
    """Answers POSTs from a script of (status, body or callable(request) -> body, headers)."""

    def __init__(self, script=(), default=None, delay: float = 0.0):
        super().__init__()
        self.script = deque(script)
        self.default = default
        self.delay = delay
        self.requests: list = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()

    def respond(self, body: bytes):
        with self.lock:
            self.requests.append(orjson.loads(body))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            step = self.script.popleft() if self.script else self.default
        time.sleep(self.delay)
        status, answer, headers = step
        data = answer(orjson.loads(body)) if callable(answer) else answer
        with self.lock:
            self.in_flight -= 1
        return status, data if isinstance(data, bytes) else orjson.dumps(data), headers


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


def test_errors_name_the_node_without_its_api_key():
    """Hosted nodes put API keys in the URL's path, query or user info: errors show scheme://host:port only."""
    from chainlake.devnet.rpc import Rpc

    with ScriptedNode(default=(401, b"unauthorized", None)) as node:
        url = node.url.rstrip("/") + "/v3/SECRETKEY?apikey=SECRET2"
        with RpcClient(url, max_retries=0, **FAST) as client, pytest.raises(NodeError) as caught:
            client.block_number()
        with Rpc(url) as rpc, pytest.raises(NodeError) as devnet_caught:
            rpc.call("eth_blockNumber")
    for exc in (caught.value, devnet_caught.value):
        assert "SECRET" not in str(exc) and node.url.rstrip("/").split("//")[1] in str(exc)


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


def test_connections_closed_by_the_server_are_forgotten():
    """A server that closes every keep-alive connection: the client keeps no list of dead connections."""
    with ScriptedNode(default=(200, ok("0x1")[1], {"Connection": "close"})) as node, RpcClient(node.url) as client:
        for _ in range(20):
            assert client.call("eth_chainId") == "0x1"
        assert len(client._http._all) <= 1
        assert len(node.requests) == 20


@pytest.mark.parametrize("code, message, unsupported", [
    (-32000, "block does not exist", False),
    (-32000, "header not found", False),
    (-32000, "historical state is not available", False),
    (-32601, "Method not found", True),
    (-32000, "the method eth_getBlockReceipts does not exist/is not available", True),
    (-32000, "Unsupported method: eth_getBlockReceipts on ETH_MAINNET", True),
    (-32603, "method not allowed", True),
])
def test_only_method_errors_mean_unsupported(code, message, unsupported):
    """"does not exist" / "not available" about the data asked for is an answer, not a missing method."""
    with ScriptedNode(default=rpc_error(code, message)) as node, RpcClient(node.url, **FAST) as client:
        if unsupported:
            with pytest.raises(MethodUnsupported, match="does not serve eth_getBlockReceipts"):
                client.call("eth_getBlockReceipts", ["0x5"])
            assert not client.supports("eth_getBlockReceipts")
        else:
            with pytest.raises(RpcError, match=f"eth_getBlockReceipts failed on the node: {message}") as err:
                client.call("eth_getBlockReceipts", ["0x5"])
            assert not isinstance(err.value, MethodUnsupported)
            assert client.supports("eth_getBlockReceipts")


def test_http_error_with_an_html_body_is_one_short_line():
    page = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
            b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
            + b"<!-- padding -->\n" * 100 + b"</body>\r\n</html>\r\n")
    html = {"Content-Type": "text/html"}
    with ScriptedNode(default=(404, page, html)) as node, RpcClient(node.url, **FAST) as client:
        with pytest.raises(NodeError, match="HTTP 404: <html> <head><title>404 Not Found</title>") as err:
            client.call("eth_chainId")
    message = str(err.value)
    assert "\n" not in message and "\r" not in message and len(message) < 260


def test_missing_url_names_the_cli_flag():
    with pytest.raises(ConfigError, match="pass --rpc-url or set ETH_RPC_URL"):
        validate_url(None)


def test_retry_after_is_never_cut_short():
    """max_backoff (0.01 s) caps our own backoff, not the node's Retry-After: wait at least what it asked."""
    script = [(429, b"", {"Retry-After": "0.4"}), (503, b"", {"Retry-After": "0.3"}), ok("0x1")]
    with ScriptedNode(script) as node, RpcClient(node.url, **FAST) as client:
        started = time.monotonic()
        assert client.call("eth_chainId") == "0x1"
        assert time.monotonic() - started >= 0.7
        assert len(node.requests) == 3


def test_retry_after_beyond_the_cap_fails_at_once():
    with ScriptedNode(default=(429, b"", {"Retry-After": "3600"})) as node, RpcClient(node.url, **FAST) as client:
        started = time.monotonic()
        with pytest.raises(NodeError, match="asks to wait 3600s before retrying"):
            client.call("eth_chainId")
        assert time.monotonic() - started < 10 and len(node.requests) == 1  # not the hour it asked for


def test_retry_after_as_an_http_date():
    from email.utils import formatdate

    from chainlake.rpc import _retry_after

    assert 8 <= _retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert _retry_after(formatdate(time.time() - 10, usegmt=True)) == 0
    assert _retry_after("1.5") == 1.5 and _retry_after(None) is None and _retry_after("soon") is None


def test_unknown_host_fails_at_once_without_retries():
    with RpcClient("http://chainlake-no-such-host.invalid:8545", max_retries=5, backoff=1.0) as client:
        started = time.monotonic()
        with pytest.raises(NodeError, match="cannot resolve host 'chainlake-no-such-host.invalid'"):
            client.call("eth_chainId")
        assert time.monotonic() - started < 5  # five retries would sleep >= 1 + 2 + 4 + 8 + 16 s x jitter >= 0.5


def test_too_large_query_under_a_rate_limit_code_is_an_answer():
    """Infura sends "query returned more than 10000 results" as -32005: not a rate limit, never retried."""
    with ScriptedNode(default=rpc_error(-32005, "query returned more than 10000 results")) as node, \
            RpcClient(node.url, **FAST) as client:
        with pytest.raises(RpcError, match="more than 10000 results"):
            client.call("eth_getLogs", [{}])
        assert len(node.requests) == 1


def test_a_closed_client_refuses_requests():
    with ScriptedNode(default=ok("0x1")) as node:
        client = RpcClient(node.url, batch_size=1)
        client.close()
        with pytest.raises(NodeError, match="is closed"):
            client.call("eth_chainId")
        with pytest.raises(NodeError, match="is closed"):
            client.batch([("eth_chainId", [])] * 3)
        assert node.requests == []
