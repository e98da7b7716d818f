"""Every ```python block in docs/ runs, and printed output matches the page.

Each page runs top to bottom in one namespace (one test per page). A ```text
block directly after a python block is that block's expected standard output,
compared after stripping trailing whitespace on each line; ``...`` in the
expected text matches any run of characters (for values that vary, such as
random draws or timings). Commands that must not run here (launching several
processes) are written in ```bash blocks.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```(\w+)[^\n]*\n(.*?)```", re.S)
PAGES = sorted(DOCS.rglob("*.md"))


def blocks(page: Path) -> list[tuple[str, str | None]]:
    """(code, expected output or None) for each python block of the page."""
    found = BLOCK.findall(page.read_text(encoding="utf-8"))
    out = []
    for i, (lang, body) in enumerate(found):
        if lang != "python":
            continue
        expected = None
        if i + 1 < len(found) and found[i + 1][0] == "text":
            # Only a text block that directly follows counts as output.
            text = page.read_text(encoding="utf-8")
            end = text.index(body) + len(body) + 3
            if text[end:].lstrip().startswith("```text"):
                expected = found[i + 1][1]
        out.append((body, expected))
    return out


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in normalise(expected).split("..."))
    return re.fullmatch(pattern, normalise(actual), flags=re.S) is not None


def test_every_page_has_been_found():
    assert any(p.name == "tutorial.md" for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_runs_and_prints_what_it_shows(page: Path):
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    for n, (code, expected) in enumerate(blocks(page), start=1):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            # dont_inherit: a page is its own module, not under this file's __future__ imports.
            exec(compile(code, f"{page.name} block {n}", "exec", dont_inherit=True), namespace)
        if expected is not None:
            assert matches(expected, stdout.getvalue()), (
                f"{page.name} block {n} printed:\n{stdout.getvalue()}\nbut the page shows:\n{expected}"
            )
