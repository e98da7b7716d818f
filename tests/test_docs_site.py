"""The built API reference: examples render as code, every public name has an entry.

Builds the site (``mkdocs build --strict``) once per test session into a
temporary folder and reads the HTML of the pages under ``docs/api/``. The
public modules are found by walking the ``purestate`` package (every module
whose dotted name has no part starting with ``_``), and their public names
are read from ``__all__``, so modules and names added later are checked too.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest

import purestate

pytest.importorskip("mkdocstrings_handlers.python")  # installed by the docs extra

ROOT = Path(__file__).resolve().parents[1]
# Every module the API reference must cover (``purestate.io`` once it exists).
REQUIRED = [
    "purestate",
    "purestate.augment",
    "purestate.compile",
    "purestate.nn",
    "purestate.optim",
    "purestate.random",
    "purestate.environ",
    "purestate.testing",
]

pytestmark = pytest.mark.slow  # builds the whole site (about 10 s)

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Page:
    """What the checks need from one built page."""

    name: str
    ids: set[str] = field(default_factory=set)
    code: list[str] = field(default_factory=list)  # the text of each <pre> block
    prose: list[tuple[str, str]] = field(default_factory=list)  # (tag, text) of <p>/<blockquote>
    blockquotes: int = 0


class _Reader(HTMLParser):
    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[str] = []
        self.pre: list[str] | None = None
        self.open_prose: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key == "id" and value:
                self.page.ids.add(value)
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "pre" and self.pre is None:
            self.pre = []
        if tag in ("p", "blockquote"):
            self.open_prose.append((tag, []))
            if tag == "blockquote":
                self.page.blockquotes += 1

    def handle_endtag(self, tag):
        if tag in VOID or tag not in self.stack:
            return
        while self.stack:
            closed = self.stack.pop()
            if closed == "pre" and "pre" not in self.stack and self.pre is not None:
                self.page.code.append("".join(self.pre))
                self.pre = None
            if closed in ("p", "blockquote") and self.open_prose:
                kind, parts = self.open_prose.pop()
                self.page.prose.append((kind, "".join(parts)))
            if closed == tag:
                break

    def handle_data(self, data):
        if self.pre is not None:
            self.pre.append(data)
        if "pre" not in self.stack and "code" not in self.stack:
            for _, parts in self.open_prose:
                parts.append(data)


def public_modules() -> list[ModuleType]:
    found = [purestate]
    for info in pkgutil.walk_packages(purestate.__path__, "purestate."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        found.append(importlib.import_module(info.name))
    return found


def public_names(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module.__name__} has no __all__"
    return list(names)


def documented_examples() -> list[tuple[str, doctest.Example]]:
    """(object's name, example) for each doctest example that the API shows:
    those of the public modules' own docstrings and of their public names."""
    finder = doctest.DocTestFinder()
    module_finder = doctest.DocTestFinder(recurse=False)
    found: dict[tuple[str, int], tuple[str, doctest.Example]] = {}
    for module in public_modules():
        tests = list(module_finder.find(module))
        for name in public_names(module):
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue  # its own docstring is checked as a module
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants have no examples
            tests += finder.find(obj, f"{module.__name__}.{name}", module=False, globs={})
        for test in tests:
            if any(part.startswith("_") for part in test.name.split(".")[1:]):
                continue  # private methods are not rendered
            for example in test.examples:
                found[(test.name, example.lineno)] = (test.name, example)
    return list(found.values())


@pytest.fixture(scope="session")
def api_pages(tmp_path_factory) -> list[Page]:
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    pages = []
    for html in sorted((site / "api").rglob("*.html")):
        page = Page(str(html.relative_to(site)))
        _Reader(page).feed(html.read_text(encoding="utf-8"))
        pages.append(page)
    assert pages, "the site has no API pages"
    return pages


def test_the_required_modules_are_public():
    names = {m.__name__ for m in public_modules()}
    assert set(REQUIRED) <= names


def test_every_public_name_has_an_entry(api_pages):
    ids = set().union(*(page.ids for page in api_pages))
    missing = [
        f"{module.__name__}.{name}"
        for module in public_modules()
        for name in public_names(module)
        if f"{module.__name__}.{name}" not in ids
    ]
    missing += [m.__name__ for m in public_modules() if m.__name__ not in ids]
    assert not missing, f"no entry in docs/api/*.md for: {missing}"


def test_every_example_is_rendered_as_code(api_pages):
    code = "\n".join(
        "\n".join(line.rstrip() for line in block.splitlines())
        for page in api_pages
        for block in page.code
    )
    examples = documented_examples()
    assert len(examples) > 50, "the docstrings' examples were not found"
    missing = []
    for name, example in examples:
        lines = example.source.rstrip("\n").split("\n")
        shown = [f">>> {lines[0]}"] + [f"... {line}" for line in lines[1:]]
        if example.want:  # Griffe shows <BLANKLINE> as the empty line it stands for
            shown += example.want.replace("<BLANKLINE>", "").rstrip("\n").split("\n")
        if "\n".join(line.rstrip() for line in shown) not in code:
            missing.append(f"{name}: {shown[0]!r}")
    assert not missing, "examples not shown inside a code block:\n" + "\n".join(missing)


def test_no_prompt_outside_code(api_pages):
    stray = [
        f"{page.name} <{tag}>: {text.strip()[:80]!r}"
        for page in api_pages
        for tag, text in page.prose
        if ">>>" in text
    ]
    assert not stray, "'>>>' outside a code block:\n" + "\n".join(stray)
    quoted = [page.name for page in api_pages if page.blockquotes]
    assert not quoted, f"blockquotes (doctest lines read as quotes?) on: {quoted}"
