"""The command line: real ingest into a lake, SQL over the catalog, and one clear line for bad input."""

import json

import pytest
from typer.testing import CliRunner

from chainlake.cli import app

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, list(args), env={"ETH_RPC_URL": "", **(env or {})})


@pytest.fixture(scope="module")
def filled(devnet, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    lake, catalog = root / "lake", root / "c.duckdb"
    result = run("ingest", "--rpc-url", devnet.url, "--blocks", "0:120", "--datasets", "blocks,transactions,logs",
                 "--lake", str(lake), "--catalog", str(catalog))
    assert result.exit_code == 0, result.output
    return devnet, lake, catalog


def test_ingest_then_sql(filled):
    devnet, lake, catalog = filled
    out = run("sql", "select count(*) as n, max(block_number) as hi from blocks", "--format", "json",
              "--catalog", str(catalog), "--lake", str(lake))
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == [{"n": 120, "hi": 119}]
    table = run("sql", "select address, count(*) from logs group by 1", "--catalog", str(catalog))
    assert table.exit_code == 0 and "rows" in table.output


@pytest.mark.parametrize("statement, message", [
    ("select * from no_such_view", "SQL error"),
    ("selec 1", "SQL error"),
    ("create table t as select 1", "SQL error"),  # the catalog is opened read-only
])
def test_bad_sql_is_one_clear_line(filled, statement, message):
    _, lake, catalog = filled
    out = run("sql", statement, "--catalog", str(catalog), "--lake", str(lake))
    assert out.exit_code == 2
    assert out.output.startswith(f"error: {message}") and out.output.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--rpc-url", "not a url"], "URL"),
    (["--rpc-url", "http://127.0.0.1:9"], "127.0.0.1:9"),
    (["--blocks", "50:10"], "block"),
    (["--blocks", "0:99999999"], "block"),
    (["--datasets", "blocks,nonsense"], "nonsense"),
    (["--datasets", "balances", "--addresses", "0x1234", "--tokens", "0x1234"], "0x1234"),
])
def test_bad_input_writes_nothing(devnet, tmp_path, args, message):
    base = {"--rpc-url": devnet.url, "--blocks": "0:10", "--datasets": "blocks"}
    pairs = dict(zip(args[::2], args[1::2]))
    merged = {**base, **pairs}
    argv = ["ingest", *[x for kv in merged.items() for x in kv],
            "--lake", str(tmp_path / "lake"), "--catalog", str(tmp_path / "c.duckdb")]
    out = run(*argv)
    assert out.exit_code == 2, out.output
    assert out.output.startswith("error: ") and out.output.count("\n") == 1, out.output
    assert message in out.output
    assert list(tmp_path.iterdir()) == []


def test_no_node_configured(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run("ingest", "--blocks", "0:10")
    assert out.exit_code == 2 and "ETH_RPC_URL" in out.output


def test_eth_rpc_url_is_the_default_node(devnet, tmp_path):
    out = run("ingest", "--blocks", "0:5", "--datasets", "blocks", "--lake", str(tmp_path / "lake"),
              "--catalog", str(tmp_path / "c.duckdb"), env={"ETH_RPC_URL": devnet.url})
    assert out.exit_code == 0, out.output
    assert "blocks 0..4" in out.output


def test_datasets_lists_schemas():
    out = run("datasets")
    assert out.exit_code == 0
    for name in ("blocks", "transactions", "logs", "traces", "balances"):
        assert f"{name}: methods" in out.output
    assert "eth_getBlockReceipts" in out.output and "trace_block" in out.output
