"""Schemas are explicit and documented, written files match them, and hex conversions are exact."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from chainlake.errors import NodeError
from chainlake.ingest import DATASETS, SCHEMAS, ingest, partition_files
from chainlake.ingest import schemas as schemas_module
from chainlake.ingest.convert import checked, hex_to_decimal, hex_to_int, lowercase, quantity, uint256_frame

UINT256 = st.integers(min_value=0, max_value=2**256 - 1)
# Mostly large values, with the 2^128 boundary (native parse vs Python fallback) well covered.
AMOUNTS = st.one_of(UINT256, st.integers(0, 2**64), st.integers(2**128 - 3, 2**128 + 3),
                    st.sampled_from([0, 1, 2**128 - 1, 2**128, 2**256 - 1]))


@given(UINT256)
def test_reference_conversion_round_trips(n):
    assert hex_to_int(hex(n)) == n
    assert hex_to_decimal(hex(n)) == str(n)


@given(st.lists(st.one_of(AMOUNTS, st.none()), max_size=40))
def test_uint256_columns_are_exact(values):
    frame = pl.DataFrame({"v": [None if n is None else hex(n) for n in values]}, schema={"v": pl.String})
    out = uint256_frame(frame, "v", "value")
    assert out["value"].to_list() == [None if n is None else str(n) for n in values]
    assert out["value_f64"].to_list() == [None if n is None else float(n) for n in values]


@given(st.lists(UINT256.map(lambda n: "0x" + format(n, "064x")), min_size=1, max_size=10))
def test_uint256_reads_padded_abi_words(words):
    out = uint256_frame(pl.DataFrame({"w": words}), "w", "balance")
    assert out["balance"].to_list() == [str(int(w, 16)) for w in words]


@given(st.lists(st.integers(0, 2**63 - 1), max_size=30))
def test_int64_quantities(values):
    raw = pl.DataFrame({"q": [hex(v) for v in values]}, schema={"q": pl.String})
    out = checked(raw.select(quantity("q").alias("n")), raw, {"n": "q"}, "test")
    assert out["n"].to_list() == values


def test_empty_hex_reads_as_zero():
    raw = pl.DataFrame({"q": ["0x", "0x0", None]})
    out = checked(raw.select(quantity("q").alias("n")), raw, {"n": "q"}, "test")
    assert out["n"].to_list() == [0, 0, None]
    assert uint256_frame(pl.DataFrame({"v": ["0x"]}), "v", "x")["x"].to_list() == ["0"]


def test_uppercase_hex_is_lowercased():
    frame = pl.DataFrame({"a": ["0xAbC", "0xabc", None], "b": ["0xff", "0x1", None]})
    assert lowercase(frame, ["a", "b"])["a"].to_list() == ["0xabc", "0xabc", None]


@pytest.mark.parametrize("bad", [hex(2**63), "0xzz", "12", "-0x1"])
def test_quantity_overflow_or_garbage_is_an_error(bad):
    raw = pl.DataFrame({"q": [bad]})
    out = raw.select(quantity("q").alias("n"))
    with pytest.raises(NodeError, match="fits int64"):
        checked(out, raw, {"n": "q"}, "test")


def test_every_dataset_has_an_explicit_documented_schema():
    doc = schemas_module.__doc__
    assert set(SCHEMAS) == set(DATASETS)
    for name, dataset in DATASETS.items():
        assert dataset.schema is SCHEMAS[name]
        assert f"| {name}" in doc
        for column in dataset.schema.names:
            assert column.split("_f64")[0] in doc or column in ("topic0", "topic1", "topic2", "topic3"), column
        assert set(dataset.keys) <= set(dataset.schema.names)
        assert dataset.methods and dataset.description


def test_conventions():
    for schema in SCHEMAS.values():
        for field in schema:
            if field.name.endswith("_f64"):
                assert field.type == pa.float64()
                assert schema.field(field.name[:-4]).type == pa.large_string()  # exact decimal partner
            elif field.name.endswith(("_number", "_index", "gas", "nonce", "_count", "timestamp")):
                assert field.type == pa.int64(), field.name


def test_written_files_match_the_schemas(devnet, tmp_path):
    layout = devnet.layout
    addresses = [layout.agents_of("arb")[0], layout.deployer]
    tokens = [info.address for info in layout.tokens.values()][:2]
    first = layout.deploy_block
    ingest(devnet.url, f"{first}:{first + 30}", list(DATASETS), tmp_path, addresses=addresses, tokens=tokens)
    for name, dataset in DATASETS.items():
        files = partition_files(tmp_path, name)
        assert files, name
        for path in files.values():
            assert pq.read_schema(path).remove_metadata().equals(dataset.schema), name
            table = pq.read_table(path)
            assert table.num_rows > 0, name
            for column in ("address", "from_address", "to_address", "transaction_hash", "block_hash"):
                if column in table.column_names:
                    values = [v for v in table[column].to_pylist() if v is not None]
                    assert all(v == v.lower() and v.startswith("0x") for v in values), (name, column)
