"""docs/configuration.md documents every setting in orc.config.SETTINGS, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orc.config import SETTINGS, Setting

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BACKTICKED = re.compile(r"`([^`\n]+)`")
ORC_VARIABLE = re.compile(r"`(ORC_[A-Z0-9_]+)`")


def _doc_text() -> str:
    assert DOC.is_file(), f"{DOC} is missing"
    return DOC.read_text(encoding="utf-8")


def _table_rows(text: str) -> list[set[str]]:
    """The backticked names of each Markdown table row."""
    return [
        set(BACKTICKED.findall(line)) for line in text.splitlines() if line.lstrip().startswith("|")
    ]


def _known_variables() -> set[str]:
    names = {s.env for s in SETTINGS}
    names |= {s.file_env for s in SETTINGS if s.secret}
    return names


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_a_table_row_with_its_variable_and_yaml_key(setting: Setting):
    rows = [row for row in _table_rows(_doc_text()) if setting.env in row]
    assert rows, f"{setting.env} has no row in a table of {DOC.name}"
    if setting.env_only:
        return
    assert any(setting.name in row for row in rows), (
        f"no table row of {DOC.name} names both `{setting.env}` and its YAML key `{setting.name}`"
    )


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.secret], ids=lambda s: s.name)
def test_every_secret_documents_its_file_variant(setting: Setting):
    assert f"`{setting.file_env}`" in _doc_text(), f"{setting.file_env} is not documented"


def test_doc_names_no_orc_variable_that_does_not_exist():
    documented = set(ORC_VARIABLE.findall(_doc_text()))
    unknown = sorted(documented - _known_variables())
    assert not unknown, f"{DOC.name} documents variables that orc does not read: {unknown}"


def test_the_check_itself_finds_unknown_and_file_variants():
    sample = "`ORC_PORT` `ORC_AUTH_TOKEN_FILE` `ORC_PORT_FILE` `ORC_NOPE`"
    unknown = set(ORC_VARIABLE.findall(sample)) - _known_variables()
    assert unknown == {"ORC_PORT_FILE", "ORC_NOPE"}


def test_doc_explains_database_url_forms_and_managed_variables():
    text = _doc_text()
    for needed in ("sqlite:///", "postgres://", "postgresql://", "PROMETHEUS_MULTIPROC_DIR"):
        assert needed in text
    from orc.config import POSTGRES_URL_OPTIONS, SSL_MODES

    for name in (*POSTGRES_URL_OPTIONS, *SSL_MODES):
        assert f"`{name}`" in text, f"{name} is not documented"
