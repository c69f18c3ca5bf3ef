"""The image's entry point with arguments: orc's subcommands run as `orc …` (the spec's image has
``ENTRYPOINT ["orc"]``), any other command runs as given. The script itself is run here, with
this checkout's orc on PATH; nothing is migrated and no supervisord starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from orc import __version__
from orc.cli.main import cli
from tests.deploy_support import ENTRYPOINT
from tests.support import base_env


def _entrypoint(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_an_orc_subcommand_runs_as_orc(tmp_path: Path):
    # docker run IMAGE token generate
    result = _entrypoint(tmp_path, "token", "generate")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\S{32,}", result.stdout.strip())
    assert not (tmp_path / "home" / "orc.db").exists()


def test_an_option_goes_to_orc(tmp_path: Path):
    result = _entrypoint(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout


def test_a_subcommand_that_shares_a_name_with_a_program_is_orcs(tmp_path: Path):
    result = _entrypoint(tmp_path, "diff", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: orc diff")


def test_any_other_command_runs_as_given(tmp_path: Path):
    result = _entrypoint(tmp_path, "sh", "-c", "echo given $0", "x")
    assert (result.returncode, result.stdout) == (0, "given x\n")
    result = _entrypoint(tmp_path, "orc", "token", "generate")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip()) >= 32


def test_an_unknown_command_fails_as_the_shell_says(tmp_path: Path):
    result = _entrypoint(tmp_path, "no-such-program-here")
    assert result.returncode == 127
    assert not (tmp_path / "home").exists()


def test_the_entry_points_list_is_every_orc_subcommand():
    text = ENTRYPOINT.read_text(encoding="utf-8")
    listed = re.search(r'^ORC_COMMANDS=" (.*) "$', text, re.MULTILINE)
    assert listed is not None
    visible = {name for name, command in cli.commands.items() if not command.hidden}
    assert set(listed.group(1).split()) == visible
