"""Running git: one place that sets the environment and turns failures into one-line errors.

Repositories on a server are often owned by another user (a mounted volume): git then refuses
them as "dubious ownership". orc names each repository it works on as a safe directory for
that one command, instead of changing the user's global git configuration. A clone or fetch
from such a repository runs git-upload-pack in it, which git starts without the command's
``-c`` options (git >= 2.45.1 checks ownership there too): those two get a throwaway global
configuration file naming the same directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from orc.errors import EXIT_FAILED, OrcError

GIT_TIMEOUT_SECONDS = 300.0


class GitError(OrcError):
    """A git command failed; the message carries git's own last line."""

    status = 500
    code = "git_failed"
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What git needs and nothing of orc's own secrets; never an interactive prompt."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
    )
    if extra:
        env.update(extra)
    return env


async def run_git(
    repo: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    trust: tuple[Path, ...] = (),
) -> str:
    """``git -C repo args…``; returns stdout. ``repo`` and the repositories in ``trust`` are
    trusted whoever owns them (for this command only)."""
    safe = [arg for path in (repo, *trust) for arg in ("-c", f"safe.directory={path}")]
    with _upload_pack_trust(trust if _verb(args) in ("clone", "fetch") else ()) as extra:
        proc = await asyncio.create_subprocess_exec(
            "git",
            *safe,
            "-C",
            str(repo),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_environment({**(env or {}), **extra}),
        )
        try:
            async with asyncio.timeout(GIT_TIMEOUT_SECONDS):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise GitError(
                f"git {_verb(args)} in {repo} did not finish in {GIT_TIMEOUT_SECONDS:.0f} s"
            ) from None
    if check and proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or ["(no message)"]
        # git's first fatal line says why; the last is often generic advice.
        fatal = next((line for line in lines if line.startswith("fatal:")), lines[-1])
        raise GitError(f"git {_verb(args)} in {repo} failed: {fatal}")
    return out.decode(errors="replace")


@contextlib.contextmanager
def _upload_pack_trust(trust: tuple[Path, ...]) -> Iterator[dict[str, str]]:
    """GIT_CONFIG_GLOBAL naming ``trust`` (and their .git) as safe, for git-upload-pack."""
    if not trust:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="orc-git-") as scratch:
        config = Path(scratch) / "gitconfig"
        lines = [f"\tdirectory = {p}\n" for path in trust for p in (path, path / ".git")]
        config.write_text("[safe]\n" + "".join(lines), encoding="utf-8")
        yield {"GIT_CONFIG_GLOBAL": str(config)}


def _verb(args: tuple[str, ...]) -> str:
    """The subcommand of ``args`` (skipping ``-c key=value`` options), for messages."""
    for index, arg in enumerate(args):
        if not arg.startswith("-") and (index == 0 or args[index - 1] != "-c"):
            return arg
    return "command"
