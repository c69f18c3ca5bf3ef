"""README.md as a Markdown renderer reads it: whole tables; every route in the endpoint table."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.token import Token
from sanic import Sanic

from orc.api.app import create_app
from orc.config import load_settings
from tests.support import base_env

README = Path(__file__).resolve().parent.parent / "README.md"
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
PLACEHOLDER = re.compile(r"^(\{[^}]*\}|<[^>]*>)$")


def _tokens() -> tuple[list[str], list[Token]]:
    text = README.read_text(encoding="utf-8")
    return text.splitlines(), MarkdownIt("commonmark").enable("table").parse(text)


def test_every_table_in_the_readme_renders_whole():
    """A blank line or a stray character inside a table ends it: the rest shows as text."""
    lines, tokens = _tokens()
    in_tables: set[int] = set()
    for token in tokens:
        if token.type == "table_open" and token.map:
            in_tables.update(range(*token.map))
    fenced: set[int] = set()
    for token in tokens:
        if token.type in ("fence", "code_block") and token.map:
            fenced.update(range(*token.map))
    table_like = {
        number
        for number, line in enumerate(lines)
        if line.lstrip().startswith("|") and number not in fenced
    }
    broken = sorted(table_like - in_tables)
    assert not broken, "lines that look like table rows but render as text: " + ", ".join(
        f"{n + 1}: {lines[n][:60]}" for n in broken
    )


def _documented() -> list[tuple[set[str], list[str]]]:
    """(methods, path segments) of every code span in the README's tables that names a path."""
    _, tokens = _tokens()
    found: list[tuple[set[str], list[str]]] = []
    in_table = False
    for token in tokens:
        in_table = (in_table or token.type == "table_open") and token.type != "table_close"
        if not in_table or token.type != "inline":
            continue
        for child in token.children or []:
            if child.type != "code_inline":
                continue
            words = child.content.split()
            path = words[-1].partition("?")[0] if words else ""
            if not path.startswith("/"):
                continue
            methods = set(words[0].split("/")) & METHODS if len(words) == 2 else set()
            found.append((methods, path.strip("/").split("/") if path != "/" else []))
    return found


def _covers(pattern: list[str], path: list[str]) -> bool:
    for index, segment in enumerate(pattern):
        if segment == "*":
            return len(path) > index
        if index >= len(path):
            return False
        if PLACEHOLDER.match(segment) and PLACEHOLDER.match(path[index]):
            continue
        if segment != path[index]:
            return False
    return len(pattern) == len(path)


def test_every_route_of_the_app_is_in_the_readmes_endpoint_table(tmp_path: Path):
    Sanic.test_mode = True
    app = create_app(load_settings(environ=base_env(tmp_path), cwd=tmp_path))
    documented = _documented()
    assert len(documented) > 30, documented
    missing = []
    for route in app.router.routes:
        path = route.path.strip("/").split("/") if route.path.strip("/") else []
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            if not any(
                _covers(pattern, path) and (not methods or method in methods)
                for methods, pattern in documented
            ):
                missing.append(f"{method} /{route.path}")
    assert not missing, "routes missing from README.md's endpoint table: " + ", ".join(missing)
