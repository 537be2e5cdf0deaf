"""The live trader's signing key: loaded from a file or an environment variable, and never shown.

A private key that reaches a log line, an exception message, a ledger row or run metadata is a key that
leaks (CI logs, bug reports, the lake shipped to a colleague). So the key lives only inside `Wallet`:
its repr/str show the address and `<redacted>`; it is never pickled; every error raised while loading or
signing is a fresh `ConfigError`/`SigningError` whose text is written here (never the underlying
exception's text, which may echo its input), raised outside any `except` block (so it has no
`__context__` holding the library's exception and its frames) after the frames it leaves have dropped
every local that holds the key (a traceback printed with its locals shows none).

Signing uses eth_account (EIP-1559 type-2 transactions); nothing here does its own cryptography.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from chainlake.errors import ChainlakeError, ConfigError

KEY_ENV = "CHAINLAKE_PRIVATE_KEY"
log = logging.getLogger(__name__)


class SigningError(ChainlakeError):
    """A transaction could not be signed (its fields are wrong); the message never holds the key."""


@dataclass(frozen=True)
class SignedTx:
    raw: str  # 0x hex of the signed envelope, for eth_sendRawTransaction
    hash: str  # 0x hex


class Wallet:
    """An account able to sign; `address` is public, the key is not reachable through repr, str or pickle."""

    __slots__ = ("_account", "address")

    def __init__(self, key: str):
        account, error = _account(key)
        del key  # a traceback printed with its locals must not show it
        if error is not None:
            raise ConfigError(error)
        object.__setattr__(self, "_account", account)
        object.__setattr__(self, "address", account.address.lower())

    def __setattr__(self, name, value):
        raise AttributeError("Wallet is immutable")

    def __repr__(self) -> str:
        return f"Wallet({getattr(self, 'address', '<no address>')}, key=<redacted>)"  # also half-built

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("a Wallet is not serializable (it holds a private key)")

    def sign(self, tx: dict) -> SignedTx:
        """Sign a transaction dict (eth_account field names); errors name the problem, never the key."""
        from eth_utils import to_checksum_address

        tx = {**tx, "to": to_checksum_address(tx["to"])} if tx.get("to") else dict(tx)
        error = None
        try:
            signed = self._account.sign_transaction(tx)
        except Exception as exc:  # its frames hold the key: only its redacted text leaves this block
            error = f"cannot sign the transaction: {self.redact(str(exc))}"
        if error is not None:
            raise SigningError(error)
        return SignedTx(signed.raw_transaction.to_0x_hex(), signed.hash.to_0x_hex())

    def redact(self, text: str) -> str:
        """`text` with this wallet's key (any case, with or without 0x) replaced by <redacted>: for messages
        that come from elsewhere (a library, the node) before they reach a log or an exception."""
        digits = self._account.key.hex().removeprefix("0x")
        lowered = text.lower()
        out, start = [], 0
        while (found := lowered.find(digits, start)) >= 0:
            cut = found - 2 if lowered[max(found - 2, 0):found] == "0x" else found
            out.append(text[start:cut] + "<redacted>")
            start = found + len(digits)
        return "".join(out) + text[start:]


def _account(key):
    """(eth_account account, None) for a valid key, else (None, why not): returns rather than raises, so no
    exception (nor its frames' locals) ever holds the key."""
    from eth_account import Account

    text = key.strip() if isinstance(key, str) else ""
    del key
    digits = text[2:] if text[:2].lower() == "0x" else text
    del text
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None, "the private key is malformed: expected 32 bytes as 64 hex digits (0x optional)"
    try:
        return Account.from_key("0x" + digits), None
    except Exception:  # e.g. zero or above the curve order; the library's message would echo the key
        pass
    return None, "the private key is not a valid secp256k1 key"


def load_wallet(key_file: str | Path | None = None, env: str = KEY_ENV) -> Wallet:
    """The wallet from `key_file` (a file holding the hex key), else from the environment variable `env`.

    A key file readable by other users is accepted with a warning (a devnet key in a test folder is fine;
    a real one should be chmod 600).
    """
    if key_file is not None:
        source, text = f"key file {key_file}", _read_key_file(Path(key_file))
    else:
        source, text = f"${env}", os.environ.get(env)
        if not text:
            raise ConfigError(f"no signing key: pass --key-file PATH or set ${env}")
    error = None
    try:
        return Wallet(text)
    except ConfigError as exc:
        error = f"{source}: {exc}"
    finally:
        del text
    raise ConfigError(error)


def _read_key_file(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"key file {path} does not exist or is not a file")
    text = None
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):  # a UnicodeDecodeError holds the file's bytes: not kept
        pass
    if text is None:
        raise ConfigError(f"key file {path} cannot be read as ASCII text")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is readable by other users: chmod 600 it", path)
    return text
