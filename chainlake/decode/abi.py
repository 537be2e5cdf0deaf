"""Event ABIs (ERC-20, Uniswap V2, Uniswap V3), their topic0 constants, and one vectorized log decoder.

The raw lake stores a log's `topic0..topic3` and `data` as lowercase ``0x`` hex strings. Decoding slices
them into 32-byte words (64 hex characters) with polars string kernels, then converts each word by its
ABI type, column-wise, never row by row:

- ``address``: the word's last 40 hex digits, ``0x``-prefixed, lowercase;
- ``uintN``: an exact base-10 string ``<name>`` plus ``<name>_f64`` (the raw lake's uint256 convention):
  native through UInt128; only values >= 2^128 (rare) take the exact Python path of
  `chainlake.ingest.convert.uint256_frame`;
- ``intN`` (two's complement): the same pair of columns, negative values with a leading ``-``. Values in
  (-2^127, 2^128) are converted natively: a negative word is ``ff..ff`` + a low half >= 2^127, whose
  magnitude is (bitwise-not low half) + 1, parsed as UInt128. Wider values (rare) take an exact Python
  path over those rows only;
- ``intN``/``uintN`` with N <= 32 (a tick, decimals): one Int64 column instead.

A log is decoded by an event only when its shape matches the ABI: topic0, exactly 1 + (indexed inputs)
topics, and exactly 32 bytes per non-indexed input in `data`, each word a valid encoding of its type
(zero-padded addresses and uintN, sign-extended intN, as eth_abi's strict decoder requires). Other logs
with the same topic0 are skipped (e.g. ERC-721 `Transfer`, whose token id is a 4th topic and whose data
is empty, or a non-standard contract reusing the topic0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import polars as pl

from chainlake.errors import NodeError
from chainlake.ingest.convert import ENGINE, fill_wide, uint256_columns

WORD = 64  # hex digits per 32-byte word


@dataclass(frozen=True)
class Event:
    """One event ABI: inputs in declaration order are split into indexed (topics) and data inputs."""

    name: str
    signature: str  # canonical, e.g. "Transfer(address,address,uint256)"; keccak256 of it is topic0
    topic0: str
    indexed: tuple[tuple[str, str], ...]  # (column name, ABI type) of topic1..topic3
    data: tuple[tuple[str, str], ...]     # (column name, ABI type) of the data words

    @property
    def inputs(self) -> tuple[tuple[str, str], ...]:
        return self.indexed + self.data


def _event(signature: str, topic0: str, indexed: list[tuple[str, str]], data: list[tuple[str, str]]) -> Event:
    return Event(signature.split("(")[0], signature, topic0, tuple(indexed), tuple(data))


# topic0 = keccak256(signature); checked against eth_utils.keccak in tests/test_decode.py.
TRANSFER = _event(
    "Transfer(address,address,uint256)",
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
    [("from_address", "address"), ("to_address", "address")], [("value", "uint256")])
V2_SWAP = _event(
    "Swap(address,uint256,uint256,uint256,uint256,address)",
    "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822",
    [("sender", "address"), ("to", "address")],
    [("amount0_in", "uint256"), ("amount1_in", "uint256"), ("amount0_out", "uint256"), ("amount1_out", "uint256")])
V2_SYNC = _event(
    "Sync(uint112,uint112)",
    "0x1c411e9a96e071241c2f21f7726b17ae89e3cab4c78be50e062b03a9fffbbad1",
    [], [("reserve0", "uint112"), ("reserve1", "uint112")])
V2_MINT = _event(
    "Mint(address,uint256,uint256)",
    "0x4c209b5fc8ad50758f13e2e1088ba56a560dff690a1c6fef26394f4c03821c4f",
    [("sender", "address")], [("amount0", "uint256"), ("amount1", "uint256")])
V2_BURN = _event(
    "Burn(address,uint256,uint256,address)",
    "0xdccd412f0b1252819cb1fd330b93224ca42612892bb3f4f789976e6d81936496",
    [("sender", "address"), ("to", "address")], [("amount0", "uint256"), ("amount1", "uint256")])
V2_PAIR_CREATED = _event(
    "PairCreated(address,address,address,uint256)",
    "0x0d3648bd0f6ba80134a33ba9275ac585d9d315f0ad8355cddefde31afa28d0e9",
    [("token0", "address"), ("token1", "address")], [("pair", "address"), ("pair_count", "uint256")])
V3_SWAP = _event(
    "Swap(address,address,int256,int256,uint160,uint128,int24)",
    "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67",
    [("sender", "address"), ("recipient", "address")],
    [("amount0", "int256"), ("amount1", "int256"), ("sqrt_price_x96", "uint160"), ("liquidity", "uint128"),
     ("tick", "int24")])
V3_MINT = _event(
    "Mint(address,address,int24,int24,uint128,uint256,uint256)",
    "0x7a53080ba414158be7ec69b987b5fb7d07dee101fe85488f0853ae16239d0bde",
    [("owner", "address"), ("tick_lower", "int24"), ("tick_upper", "int24")],
    [("sender", "address"), ("amount", "uint128"), ("amount0", "uint256"), ("amount1", "uint256")])
V3_BURN = _event(
    "Burn(address,int24,int24,uint128,uint256,uint256)",
    "0x0c396cd989a39f4459b5fa1aed6a9a8dcdbc45908acfd67e028cd568da98982c",
    [("owner", "address"), ("tick_lower", "int24"), ("tick_upper", "int24")],
    [("amount", "uint128"), ("amount0", "uint256"), ("amount1", "uint256")])

EVENTS: dict[str, Event] = {
    "erc20_transfer": TRANSFER, "v2_swap": V2_SWAP, "v2_sync": V2_SYNC, "v2_mint": V2_MINT, "v2_burn": V2_BURN,
    "v2_pair_created": V2_PAIR_CREATED, "v3_swap": V3_SWAP, "v3_mint": V3_MINT, "v3_burn": V3_BURN,
}

# Log columns every decoded event keeps (its position in the chain and the emitting contract).
LOG_COLUMNS = ["block_number", "transaction_index", "transaction_hash", "log_index", "address"]


def _bits(abi_type: str) -> int:
    digits = abi_type.lstrip("uint")
    return int(digits) if digits else 256


def is_small(abi_type: str) -> bool:
    """Integer types decoded to one Int64 column (no exact string)."""
    return abi_type != "address" and _bits(abi_type) <= 32


def shape_filter(event: Event) -> pl.Expr:
    """Logs whose topic0, topic count and data length match `event`'s ABI."""
    n_topics = 1 + len(event.indexed)
    cond = pl.col("topic0") == event.topic0
    for i in range(1, 4):
        present = pl.col(f"topic{i}").is_not_null()
        cond = cond & (present if i < n_topics else ~present)
    return cond & (pl.col("data").str.len_bytes() == 2 + WORD * len(event.data))


def decode_event(logs: pl.DataFrame, event: Event) -> pl.DataFrame:
    """The logs of `event` (by shape), decoded: LOG_COLUMNS plus one column (or pair) per input."""
    # The usual case for most events in one block: no log has the topic0, nothing to convert. A Series
    # comparison answers in microseconds, where a filter query costs a few hundred.
    if not (logs.get_column("topic0") == event.topic0).any():
        return _no_events(event, tuple((c, logs.schema[c]) for c in LOG_COLUMNS))
    return _decode(logs, event)


@lru_cache(maxsize=64)
def _no_events(event: Event, log_schema: tuple[tuple[str, pl.DataType], ...]) -> pl.DataFrame:
    """The decoded frame of no logs (its columns and types), built once per event and log schema."""
    return _decode(pl.DataFrame(schema=dict(log_schema)).with_columns(
        pl.lit(None, pl.String).alias(c) for c in ("topic0", "topic1", "topic2", "topic3", "data")), event)


def _decode(logs: pl.DataFrame, event: Event) -> pl.DataFrame:
    """Select the logs of `event`'s shape, slice their words, keep the valid ones and decode them: one query."""
    shape, words, valid = _plan(event)
    return decode_words(logs.lazy().filter(shape).select(*LOG_COLUMNS, *words).filter(valid), event.inputs)


@lru_cache(maxsize=64)
def _plan(event: Event) -> tuple[pl.Expr, tuple[pl.Expr, ...], pl.Expr]:
    """`event`'s shape filter, word slices (`__w_<name>`) and word validity filter, built once per event
    (building expressions costs more than running them on one block's logs; polars expressions are immutable)."""
    words = [pl.col(f"topic{i + 1}").str.slice(2, WORD).alias(f"__w_{name}")
             for i, (name, _) in enumerate(event.indexed)]
    words += [pl.col("data").str.slice(2 + WORD * j, WORD).alias(f"__w_{name}")
              for j, (name, _) in enumerate(event.data)]
    valid = pl.all_horizontal([pl.lit(True), *(word_in_range(f"__w_{n}", t) for n, t in event.inputs)])
    return shape_filter(event), tuple(words), valid


def word_in_range(column: str, abi_type: str) -> pl.Expr:
    """Whether a word is a valid encoding of `abi_type` (zero-padded address / uintN, sign-extended intN),
    as eth_abi's strict decoding requires; a log that fails (a non-standard contract reusing the topic0)
    is skipped rather than decoded into nonsense."""
    if abi_type == "address":
        return pl.col(column).str.starts_with("0" * 24)
    bits = _bits(abi_type)
    if bits == 256:
        return pl.lit(True)
    pad = (256 - bits) // 4  # hex digits above the value
    if abi_type.startswith("uint"):
        return pl.col(column).str.starts_with("0" * pad)
    word = pl.col(column).str.to_lowercase()
    top = word.str.slice(pad, 1)
    return (((word.str.slice(0, pad) == "0" * pad) & top.is_in(list("01234567")))
            | ((word.str.slice(0, pad) == "f" * pad) & top.is_in(list("89abcdef"))))


def decode_words(frame: pl.DataFrame | pl.LazyFrame,
                 inputs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> pl.DataFrame:
    """Replace each `__w_<name>` column (64 hex digits, no prefix) with the decoded value(s) of its type.

    Every word is converted natively in one query (with whatever `frame`, if lazy, still has to compute);
    the values that conversion cannot hold (rare) are then filled in exactly, in input order.
    """
    inputs = tuple(inputs)
    frame = frame.lazy().with_columns(_decoders(inputs)).collect(engine=ENGINE)
    for name, abi_type in inputs:
        if abi_type.startswith("uint"):
            frame = fill_wide(frame, f"__w_{name}", name)
        elif abi_type.startswith("int"):
            frame = _fill_wide_int(frame, f"__w_{name}", name)
    small = {name for name, abi_type in inputs if is_small(abi_type)}
    drop = {f"__w_{name}" for name, _ in inputs} | {f"{name}_f64" for name in small}
    # Taking columns as Series costs microseconds; drop / with_columns would each run a query.
    return pl.DataFrame([frame.get_column(c).cast(pl.Int64) if c in small else frame.get_column(c)
                         for c in frame.columns if c not in drop])


@lru_cache(maxsize=64)
def _decoders(inputs: tuple[tuple[str, str], ...]) -> tuple[pl.Expr, ...]:
    """The native conversion of each input's word `__w_<name>`: `<name>` for an address, `<name>` and
    `<name>_f64` for an integer (small ones are cast to Int64 after `fill_wide`, as their decimal string)."""
    columns: list[pl.Expr] = []
    for name, abi_type in inputs:
        word = f"__w_{name}"
        if abi_type == "address":
            columns.append((pl.lit("0x") + pl.col(word).str.slice(24, 40).str.to_lowercase()).alias(name))
        elif abi_type.startswith("uint"):
            columns += uint256_columns(word, name)
        elif abi_type.startswith("int"):
            columns += _int256_columns(word, name)
        else:
            raise ValueError(f"unsupported ABI type {abi_type}")
    return tuple(columns)


_HEX = "0123456789abcdef"
_U128 = pl.UInt128


def int256_frame(frame: pl.DataFrame, src: str, out: str) -> pl.DataFrame:
    """Add `out` (exact signed decimal string) and `out_f64` from the two's complement word in `src`."""
    return _fill_wide_int(frame.with_columns(_int256_columns(src, out)), src, out)


def _int256_columns(src: str, out: str) -> list[pl.Expr]:
    """`out` and `out_f64` of the two's complement word in `src`, natively for values in (-2^127, 2^128);
    null for wider values, which `_fill_wide_int` fills."""
    word = pl.col(src).str.to_lowercase()
    hi, lo = word.str.slice(0, 32), word.str.slice(32, 32)
    lo_u = lo.str.to_integer(base=16, dtype=_U128, strict=False)
    positive = hi == "0" * 32
    negative = (hi == "f" * 32) & lo.str.slice(0, 1).is_in(list("89abcdef"))
    # |x| = ~lo + 1 for a negative value whose magnitude fits 127 bits
    magnitude = lo.str.replace_many(list(_HEX), list(reversed(_HEX))).str.to_integer(
        base=16, dtype=_U128, strict=False) + pl.lit(1, dtype=_U128)
    return [
        pl.when(positive).then(lo_u.cast(pl.String))
        .when(negative).then(pl.lit("-") + magnitude.cast(pl.String)).alias(out),
        pl.when(positive).then(lo_u.cast(pl.Float64))
        .when(negative).then(-magnitude.cast(pl.Float64)).alias(f"{out}_f64"),
    ]


def _fill_wide_int(frame: pl.DataFrame, src: str, out: str) -> pl.DataFrame:
    """Exact Python for the rows `_int256_columns` left null (|x| >= 2^127, rare) though `src` is not."""
    if frame.get_column(out).null_count() == frame.get_column(src).null_count():  # as in `fill_wide`
        return frame
    rows = (frame.get_column(out).is_null() & frame.get_column(src).is_not_null()).arg_true().to_list()
    try:
        values = [int(v, 16) for v in frame[src].gather(rows).to_list()]
    except ValueError:
        raise NodeError(f"{src}: a value is not a 32-byte hex word") from None
    values = [v - (1 << 256) if v >> 255 else v for v in values]
    return frame.with_columns(frame[out].scatter(rows, [str(v) for v in values]),
                              frame[f"{out}_f64"].scatter(rows, [float(v) for v in values]))


# -- UniswapV2Router02 swap functions (calldata of pending or included txs) -------------------------------------
@dataclass(frozen=True)
class RouterSwap:
    """One router swap function. `args` name the head words in order; "path" is the dynamic address[].

    Amounts are named by role: `amount_in` / `amount_out_min` (exact input) or `amount_out` /
    `amount_in_max` (exact output). The ETH-in functions take their input (or its cap) from the tx value:
    `value_as` names that role.
    """

    name: str
    signature: str
    selector: str  # first 4 bytes of keccak256(signature); checked against eth_utils.keccak in tests/test_mev.py
    args: tuple[str, ...]
    value_as: str | None = None

    @property
    def exact_in(self) -> bool:
        return "amount_in" in self.args or self.value_as == "amount_in"


_EXACT_IN = ("amount_in", "amount_out_min", "path", "recipient", "deadline")
_EXACT_OUT = ("amount_out", "amount_in_max", "path", "recipient", "deadline")
_ETH_IN = ("amount_out_min", "path", "recipient", "deadline")


def _router(signature: str, selector: str, args: tuple[str, ...], value_as: str | None = None) -> RouterSwap:
    return RouterSwap(signature.split("(")[0], signature, selector, args, value_as)


_U5 = "(uint256,uint256,address[],address,uint256)"
_U4 = "(uint256,address[],address,uint256)"
ROUTER_SWAPS: dict[str, RouterSwap] = {f.selector: f for f in (
    _router("swapExactTokensForTokens" + _U5, "0x38ed1739", _EXACT_IN),
    _router("swapTokensForExactTokens" + _U5, "0x8803dbee", _EXACT_OUT),
    _router("swapExactETHForTokens" + _U4, "0x7ff36ab5", _ETH_IN, "amount_in"),
    _router("swapTokensForExactETH" + _U5, "0x4a25d94a", _EXACT_OUT),
    _router("swapExactTokensForETH" + _U5, "0x18cbafe5", _EXACT_IN),
    _router("swapETHForExactTokens" + _U4, "0xfb3bdb41", ("amount_out", "path", "recipient", "deadline"),
            "amount_in_max"),
    _router("swapExactTokensForTokensSupportingFeeOnTransferTokens" + _U5, "0x5c11d795", _EXACT_IN),
    _router("swapExactETHForTokensSupportingFeeOnTransferTokens" + _U4, "0xb6f9de95", _ETH_IN, "amount_in"),
    _router("swapExactTokensForETHSupportingFeeOnTransferTokens" + _U5, "0x791ac947", _EXACT_IN),
)}
