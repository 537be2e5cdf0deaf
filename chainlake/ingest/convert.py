"""Hex quantity conversions done column-wise in polars (native code), with exact Python fallbacks.

JSON-RPC encodes every number as a ``0x`` hex string. Converting row by row in Python would dominate
ingestion time, so integers are parsed by polars' `str.to_integer(base=16)`. uint256 amounts go through
UInt128, whose decimal string is exact; only values >= 2^128 (null after the native parse) fall back to
Python's `int(h, 16)`, which is rare (no real balance or transfer reaches 2^128 wei) but must stay exact.
"""

from __future__ import annotations

from functools import cache

import polars as pl

from chainlake.errors import NodeError

_U128_MAX = 2**128 - 1
# The engine that collects the converters' and decoders' lazy queries: the in-memory one, which eager
# DataFrame operations use. polars 2 collects with its streaming engine by default, whose set-up per
# query dominates on one block's rows (a small join: ~0.7 ms instead of ~0.45 ms).
ENGINE = "in-memory"


def hex_to_int(h: str | None) -> int | None:
    """Reference conversion of one hex quantity ('0x1a' -> 26); '0x' reads as 0."""
    if h is None:
        return None
    digits = h[2:] if h[:2] in ("0x", "0X") else h
    return int(digits, 16) if digits else 0


def hex_to_decimal(h: str | None) -> str | None:
    """Reference conversion of a hex uint256 to its exact base-10 string."""
    value = hex_to_int(h)
    return None if value is None else str(value)


def quantity(col: str | pl.Expr, dtype: pl.DataType = pl.Int64) -> pl.Expr:
    """Hex quantity -> integer, one native pass. Non-strict: odd values (no 0x, not hex, too large, the
    empty '0x') become null, and `checked` fixes '0x' to 0 and raises for the rest."""
    expr = pl.col(col) if isinstance(col, str) else col
    parsed = expr.str.strip_prefix("0x").str.to_integer(base=16, dtype=dtype, strict=False)
    return parsed.alias(col) if isinstance(col, str) else parsed


def flexible_quantity(col: str | pl.Expr) -> pl.Expr:
    """A number that some nodes send as hex and others as a JSON integer (read as a decimal string)."""
    expr = pl.col(col) if isinstance(col, str) else col
    return (
        pl.when(expr.str.starts_with("0x")).then(expr.str.strip_prefix("0x").str.to_integer(base=16, strict=False))
        .otherwise(expr.str.to_integer(base=10, dtype=pl.Int64, strict=False))
    )


def checked(out: pl.DataFrame, raw: pl.DataFrame, pairs: dict[str, str], what: str,
            lower: list[str] | tuple[str, ...] = ()) -> pl.DataFrame:
    """Validate converted quantities against their sources; returns `out` with '0x' read as 0, and its hex
    columns `lower` lowercased when they hold an uppercase digit (as `lowercase` does).

    `pairs` maps a column of `out` to its source column in `raw` (same rows, same order). A source that
    is not a 0x hex quantity fitting int64 is an error naming the value, never a silent null.

    Every pair and every `lower` column is looked at in one select (a call costs about the same on one
    column as on twenty, and the online path converts a block at a time); the values are looked at again
    only when one is off.
    """
    if not pairs:
        return lowercase(out, list(lower))
    both = pl.DataFrame([out[dst].alias(f"d{i}") for i, dst in enumerate(pairs)]
                        + [raw[src].alias(f"s{i}") for i, src in enumerate(pairs.values())]
                        + [out[c].alias(f"l{j}") for j, c in enumerate(lower)])
    bad = [_bad(i) for i in range(len(pairs))]
    flags = both.select(*[b.any().alias(f"b{i}") for i, b in enumerate(bad)],
                        *[_upper(f"l{j}").alias(f"u{j}") for j in range(len(lower))]).row(0)
    flags, upper = flags[:len(pairs)], [c for c, flag in zip(lower, flags[len(pairs):]) if flag]
    if not any(flags) and not upper:
        return out
    fixes = []
    for i, ((dst, src), flag) in enumerate(zip(pairs.items(), flags)):
        if not flag:
            continue
        values = both.filter(bad[i]).get_column(f"s{i}")
        if (values != "0x").any():
            value = values.filter(values != "0x")[0]
            raise NodeError(f"{what}: {src} value {value!r} is not a hex quantity that fits int64")
        fixes.append(pl.when(both.select(bad[i]).to_series()).then(pl.lit(0, out.schema[dst]))
                     .otherwise(pl.col(dst)).alias(dst))
    if upper:
        fixes.append(pl.col(upper).str.to_lowercase())
    return out.with_columns(fixes)


@cache  # expressions are immutable; building them costs more than running them on a block's rows
def _bad(i: int) -> pl.Expr:
    """Source `s{i}` given but not read (converted `d{i}` null), or not 0x-prefixed."""
    source, converted = pl.col(f"s{i}"), pl.col(f"d{i}")
    # Never null: a null source makes the conjunction false (the fewer nodes, the cheaper the select).
    return source.is_not_null() & (converted.is_null() | ~source.str.starts_with("0x"))


@cache
def _upper(column: str) -> pl.Expr:
    """Whether hex column `column` holds an uppercase digit anywhere."""
    return pl.col(column).str.contains("[A-F]").any()


def lowercase(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Lowercase hex columns, only those that hold an uppercase digit (nodes normally send lowercase).

    One query looks at every column (a query per column would cost as much each on a block's rows)."""
    if not columns:
        return frame
    flags = frame.select(_upper(c) for c in columns).row(0)
    upper = [c for c, flag in zip(columns, flags) if flag]
    return frame.with_columns(pl.col(upper).str.to_lowercase()) if upper else frame


def uint256_columns(src: str | pl.Expr, out: str) -> list[pl.Expr]:
    """`out` (exact decimal string) and `out_f64` (float64) of the hex column `src` ('0x' optional, '0x' is 0),
    converted natively through UInt128: values >= 2^128 (and malformed ones) come out null, for `fill_wide`.

    As expressions, so that a caller converts several columns (and anything else) in one query."""
    digits = (pl.col(src) if isinstance(src, str) else src).str.strip_prefix("0x")
    u128 = pl.when(digits == "").then(pl.lit(0, pl.UInt128)).otherwise(
        digits.str.to_integer(base=16, dtype=pl.UInt128, strict=False))
    return [u128.cast(pl.String).alias(out), u128.cast(pl.Float64).alias(f"{out}_f64")]


def uint256_frame(frame: pl.DataFrame, src: str, out: str) -> pl.DataFrame:
    """Add `out` (exact decimal string) and `out_f64` (float64) computed from hex column `src`.

    Native for values < 2^128; Python only for the rows the native parse could not hold.
    """
    return fill_wide(frame.with_columns(uint256_columns(src, out)), src, out)


def fill_wide(frame: pl.DataFrame, src: str, out: str) -> pl.DataFrame:
    """`frame` with the `uint256_columns` values the native parse could not hold (>= 2^128, rare) computed
    exactly in Python, for those rows only; a malformed or out-of-range `src` value raises NodeError."""
    # A null source always gives a null value, so more nulls in `out` than in `src` means values to fill:
    # two O(1) counts instead of a query on every call.
    if frame.get_column(out).null_count() == frame.get_column(src).null_count():
        return frame
    missing = (frame.get_column(out).is_null() & frame.get_column(src).is_not_null()).arg_true()
    return _fill_wide(frame, src, out, missing.to_list())


def _fill_wide(frame: pl.DataFrame, src: str, out: str, rows: list[int]) -> pl.DataFrame:
    """Python fallback for the few values >= 2^128 (or malformed: those raise)."""
    values = frame[src].gather(rows).to_list()
    try:
        ints = [hex_to_int(v) for v in values]
    except ValueError:
        raise NodeError(f"{src}: value {values[0]!r} is not a hex quantity") from None
    if any(v < 0 or v >= 2**256 for v in ints):
        raise NodeError(f"{src}: value out of uint256 range")
    decimals = frame[out].scatter(rows, [str(v) for v in ints])
    floats = frame[f"{out}_f64"].scatter(rows, [float(v) for v in ints])
    return frame.with_columns(decimals, floats)
