"""bench/RESULTS.md holds one section per benchmark; each run rewrites only its own part between markers.

`write_section` replaces the text between `<!-- <name>:begin -->` and `<!-- <name>:end -->` with a
time-stamped table, creating the section (with `heading` and `intro`) at the end of the file the first
time. Everything else, in particular the hand-written analysis under each section, is kept.
"""

from __future__ import annotations

import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(name: str, text: str, heading: str, intro: str, path: Path = RESULTS) -> None:
    begin, end = markers(name)
    content = path.read_text() if path.exists() else ""
    if begin not in content:
        content = content.rstrip("\n") + f"\n\n# {heading}\n\n{intro}\n\n{begin}\n{end}\n"
    head, rest = content.split(begin, 1)
    tail = rest.split(end, 1)[1] if end in rest else "\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    path.write_text(f"{head}{begin}\nLast run {stamp}:\n\n{text}{end}{tail}")
