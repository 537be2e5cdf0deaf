"""Compile the devnet's Vyper contracts offline and load their artifacts.

`compile_all()` writes `build/contracts/<Name>.json` (abi, bytecode, blueprint bytecode) for every
`chainlake/devnet/contracts/*.vy`. An artifact is up to date when it records the same source hash and
vyper version, so a fresh checkout (new mtimes) does not recompile needlessly and an edit always does.
`python -m chainlake.devnet.contracts` compiles everything (the Makefile's setup runs exactly this).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from chainlake.errors import ConfigError

SOURCE_DIR = Path(__file__).resolve().parent / "contracts"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("CHAINLAKE_BUILD_DIR", PROJECT_ROOT / "build")) / "contracts"
OUTPUTS = ["abi", "bytecode", "blueprint_bytecode"]


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: ABI (list of dicts) and hex bytecodes with 0x prefix."""

    name: str
    abi: list[dict]
    bytecode: str
    blueprint_bytecode: str

    def event_abi(self, name: str) -> dict:
        """The ABI entry of event `name` (raises KeyError when absent)."""
        for item in self.abi:
            if item.get("type") == "event" and item["name"] == name:
                return item
        raise KeyError(f"{self.name} has no event {name}")


def sources() -> dict[str, Path]:
    """Every contract source by name (file stem), sorted for stable output."""
    return {p.stem: p for p in sorted(SOURCE_DIR.glob("*.vy"))}


def _vyper_version() -> str:
    import vyper

    return vyper.__version__


def _source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifact_path(name: str) -> Path:
    return BUILD_DIR / f"{name}.json"


def is_up_to_date(name: str, path: Path) -> bool:
    """True when the artifact on disk was built from this exact source with this vyper version."""
    out = _artifact_path(name)
    if not out.exists():
        return False
    try:
        meta = orjson.loads(out.read_bytes())
    except orjson.JSONDecodeError:
        return False
    return meta.get("source_sha256") == _source_hash(path) and meta.get("vyper") == _vyper_version()


def compile_one(name: str, path: Path) -> Path:
    """Compile one source with vyper's Python API and write its artifact atomically."""
    from vyper import compiler

    try:
        out = compiler.compile_code(path.read_text(), contract_path=path.name, output_formats=OUTPUTS)
    except Exception as exc:  # vyper raises many exception types; surface them as one clear error
        raise ConfigError(f"vyper could not compile {path.name}: {exc}") from exc
    artifact = {
        "name": name,
        "abi": out["abi"],
        "bytecode": out["bytecode"],
        "blueprint_bytecode": out["blueprint_bytecode"],
        "source_sha256": _source_hash(path),
        "vyper": _vyper_version(),
    }
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    target = _artifact_path(name)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")  # atomic: concurrent test processes never read half a file
    tmp.write_bytes(orjson.dumps(artifact, option=orjson.OPT_INDENT_2))
    tmp.replace(target)
    return target


def compile_all(force: bool = False) -> list[str]:
    """Compile every out-of-date contract; return the names compiled (empty when all were current)."""
    compiled = []
    for name, path in sources().items():
        if force or not is_up_to_date(name, path):
            compile_one(name, path)
            compiled.append(name)
    return compiled


def load(name: str) -> Artifact:
    """Load a contract's artifact, compiling it first when missing or stale."""
    srcs = sources()
    if name not in srcs:
        raise ConfigError(f"unknown contract {name!r}; known: {', '.join(srcs)}")
    if not is_up_to_date(name, srcs[name]):
        compile_one(name, srcs[name])
    data = orjson.loads(_artifact_path(name).read_bytes())
    return Artifact(name, data["abi"], data["bytecode"], data["blueprint_bytecode"])


def main() -> None:
    started = time.perf_counter()
    compiled = compile_all(force="--force" in sys.argv)
    took = time.perf_counter() - started
    print(f"contracts: compiled {', '.join(compiled) or 'nothing (all up to date)'} into {BUILD_DIR} in {took:.1f}s")


if __name__ == "__main__":
    main()
