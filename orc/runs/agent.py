"""One turn of Claude Code, driven through Anthropic's ``claude-agent-sdk``.

A turn sends one prompt (starting a session, or resuming the phase's session so context
carries over) and reads the agent's messages until its result. Each message becomes a
transcript item as it arrives. A turn's tokens come from its result's exact per-model totals
(streamed messages carry the usage of their start, before output is counted); only a turn cut
short falls back to those. The CLI runs under ``orc-agent-exec``, which gives it only the
environment orc chose and kills its whole process group when the turn ends or is cancelled.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import shutil
import signal
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from orc.runs.agent_exec import CLI, ENV_KEYS, PIDFILE, PYTHON
from orc.runs.transcript import TranscriptItem

# What claude-agent-sdk itself sets for the CLI it starts (no secret: how the CLI was started,
# the SDK's version, that the SDK reads its session-state frames, and PWD, the working
# directory). The launcher passes them on, so the CLI runs exactly as under the SDK alone:
# without PWD a trivial turn took ~0.75 s longer and ~80 ms more CPU (8 interleaved pairs).
SDK_VARIABLES = (
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_AGENT_SDK_VERSION",
    "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    "PWD",
)

OnItem = Callable[[TranscriptItem], Awaitable[None]]
OnSession = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class AgentConfig:
    """How orc starts Claude Code (from the settings, once per worker)."""

    cli: str
    launcher: str
    model: str | None
    permission_mode: str
    allowed_tools: tuple[str, ...]


@dataclass(frozen=True)
class MessageUsage:
    """Tokens a model used in a turn (or in one message of a turn cut short), and the agent's
    own cost figure for them when it reported one."""

    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float | None = None


@dataclass
class TurnResult:
    """What a turn ended with."""

    session_id: str | None = None
    final_text: str = ""
    cost_usd: float | None = None
    usage: list[MessageUsage] = field(default_factory=list)
    is_error: bool = False
    error: str | None = None
    api_error_status: int | None = None
    # The CLI's process ended before its result (killed, crashed): the turn may be retried.
    crashed: bool = False


def bundled_cli() -> str:
    """The Claude Code CLI that ships inside claude-agent-sdk's wheel (found without importing
    the SDK, which takes seconds and tens of MiB: the worker loads it at its first turn)."""
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "_bundled" / "claude"
        if path.exists():
            return str(path)
    return shutil.which("claude") or "claude"


def launcher_path() -> str:
    """The launcher's shell wrapper in this package (it runs ``agent_exec.py`` without
    site-packages: 58 -> 43 ms of CPU a turn, /bin/true as the CLI, 30 interleaved starts at
    load 19); ``orc-agent-exec`` beside this Python if the package's copy lost its mode."""
    wrapper = Path(__file__).with_name("agent-exec.sh")
    if os.access(wrapper, os.X_OK):
        return str(wrapper)
    beside = Path(sys.executable).parent / "orc-agent-exec"
    return str(beside) if beside.exists() else (shutil.which("orc-agent-exec") or str(beside))


def kill_agent(pidfile: Path) -> None:
    """End the agent and every process it started, now (the SDK's own close waits 5 s first):
    the launcher kills its whole tree when told to stop."""
    try:
        launcher = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(launcher, signal.SIGTERM)


def _usage(model: str, usage: Mapping[str, Any]) -> MessageUsage:
    return MessageUsage(
        model=model,
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
    )


def _tool_result_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [part.get("text", "") for part in content if isinstance(part, dict)]
    return "\n".join(part for part in parts if part)


# API answers that no retry can fix: stop the turn at the first one instead of waiting out
# the CLI's ten retries with backoff (minutes).
FATAL_API_STATUSES = (401, 403)


class _TurnReader:
    """Turns the SDK's messages into transcript items and the turn's result."""

    def __init__(
        self, session_id: str | None, on_item: OnItem, on_session: OnSession | None = None
    ) -> None:
        self.result = TurnResult(session_id=session_id)
        self.on_session = on_session
        self.on_item = on_item
        self.per_message: dict[str, MessageUsage] = {}
        self.last_text: list[str] = []
        self.ended = False  # the turn's result arrived

    async def handle(self, message: Any) -> bool:
        """Take one message; False when the turn must stop now."""
        from claude_agent_sdk import (
            AssistantMessage,
            ResultMessage,
            SystemMessage,
            UserMessage,
        )

        known = self.result.session_id
        if isinstance(message, SystemMessage) and message.subtype == "init":
            self.result.session_id = message.data.get("session_id") or known
        if isinstance(message, AssistantMessage):
            await self._assistant(message)
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            await self._tool_results(message.content)
        elif isinstance(message, SystemMessage) and message.subtype == "api_retry":
            return await self._retry(message.data)
        elif isinstance(message, ResultMessage):
            await self._end(message)
        if self.on_session and self.result.session_id and self.result.session_id != known:
            # Known before the turn ends: a worker that dies mid-turn leaves it for the next.
            await self.on_session(self.result.session_id)
        return True

    async def _assistant(self, message: Any) -> None:
        from claude_agent_sdk import TextBlock, ThinkingBlock, ToolUseBlock

        self.result.session_id = message.session_id or self.result.session_id
        if message.usage and message.message_id:
            # Only a fallback for a turn cut short: streamed messages carry the usage of
            # their start (output tokens not counted yet).
            self.per_message[message.message_id] = _usage(message.model, message.usage)
        texts = []
        for block in message.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
                await self.on_item(TranscriptItem("text", {"text": block.text}))
            elif isinstance(block, ThinkingBlock):
                await self.on_item(TranscriptItem("thinking", {"text": block.thinking}))
            elif isinstance(block, ToolUseBlock):
                content = {"id": block.id, "name": block.name, "input": block.input}
                await self.on_item(TranscriptItem("tool_use", content))
        if texts and message.parent_tool_use_id is None:
            self.last_text = texts

    async def _tool_results(self, blocks: list[Any]) -> None:
        from claude_agent_sdk import ToolResultBlock

        for block in blocks:
            if isinstance(block, ToolResultBlock):
                content = {
                    "tool_use_id": block.tool_use_id,
                    "content": _tool_result_text(block.content),
                    "is_error": bool(block.is_error),
                }
                await self.on_item(TranscriptItem("tool_result", content))

    async def _retry(self, data: Mapping[str, Any]) -> bool:
        status = data.get("error_status")
        if status in FATAL_API_STATUSES:
            self.result.is_error = True
            self.result.api_error_status = int(status)
            self.result.error = str(data.get("error") or f"HTTP {status}")
            await self.on_item(TranscriptItem("error", {"text": f"API answered {status}"}))
            return False
        delay = float(data.get("retry_delay_ms") or 0) / 1000
        text = (
            f"API {'HTTP ' + str(status) if status else 'connection'} error "
            f"({data.get('error') or 'unknown'}); retry {data.get('attempt')} of "
            f"{data.get('max_retries')} in {delay:.1f} s"
        )
        await self.on_item(TranscriptItem("note", {"text": text}))
        return True

    async def _end(self, message: Any) -> None:
        self.ended = True
        self.result.session_id = message.session_id or self.result.session_id
        self.result.cost_usd = message.total_cost_usd
        self.result.is_error = message.is_error
        self.result.api_error_status = message.api_error_status
        if message.is_error:
            errors = ", ".join(message.errors or [])
            self.result.error = message.result or errors or message.subtype
        if message.model_usage:
            self.result.usage = [
                _model_usage(model, figures) for model, figures in message.model_usage.items()
            ]
            if len(self.result.usage) == 1 and self.result.usage[0].cost_usd is None:
                # One model: the turn's total is its cost (older CLIs gave no per-model figure).
                only = self.result.usage[0]
                self.result.usage = [replace(only, cost_usd=message.total_cost_usd)]
        await self.on_item(
            TranscriptItem(
                "result",
                {
                    "session_id": message.session_id,
                    "is_error": message.is_error,
                    "cost_usd": message.total_cost_usd,
                    "duration_ms": message.duration_ms,
                    "turns": message.num_turns,
                    "text": message.result or "",
                },
            )
        )

    def finish(self) -> TurnResult:
        self.result.final_text = "\n".join(self.last_text)
        if not self.result.usage:
            self.result.usage = list(self.per_message.values())
        return self.result


def _load_sdk() -> None:
    """Import claude-agent-sdk (at the worker's first turn: a worker that runs no task never
    loads it), then leave everything imported out of the garbage collector's full collections.
    The import makes tens of thousands of objects, and the next full collection walked them
    all in the middle of the first runs: a 115 ms pause of every agent's messages on their way
    to the transcript (bench/run_event_latency.py, SQLite, gc callbacks in the worker)."""
    if "claude_agent_sdk" in sys.modules:
        return
    import claude_agent_sdk  # noqa: F401

    gc.freeze()


async def run_turn(
    config: AgentConfig,
    *,
    cwd: Path,
    env: Mapping[str, str],
    prompt: str,
    session_id: str | None,
    pidfile: Path,
    on_item: OnItem,
    on_session: OnSession | None = None,
) -> TurnResult:
    """Send ``prompt`` (resuming ``session_id`` if given) and follow the agent to its result."""
    _load_sdk()
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKError, query

    launch_env = {
        **env,
        CLI: config.cli,
        PYTHON: sys.executable,
        ENV_KEYS: ",".join(sorted({*env, *SDK_VARIABLES})),
        PIDFILE: str(pidfile),
    }
    options = ClaudeAgentOptions(
        cwd=str(cwd),
        cli_path=config.launcher,
        env=launch_env,
        model=config.model,
        permission_mode=config.permission_mode,  # type: ignore[arg-type]
        allowed_tools=list(config.allowed_tools),
        resume=session_id,
        setting_sources=[],  # the server's own ~/.claude settings never apply
    )
    reader = _TurnReader(session_id, on_item, on_session)
    await on_item(TranscriptItem("prompt", {"text": prompt}))
    try:
        stream = cast(AsyncGenerator[Any, None], query(prompt=prompt, options=options))
        async with contextlib.aclosing(stream) as messages:
            async for message in messages:
                if not await reader.handle(message):
                    # Closing the SDK's stream early left the CLI running, still retrying,
                    # with its output pipe open: end the agent's whole tree here.
                    kill_agent(pidfile)
                    break
    except ClaudeSDKError as exc:
        if not reader.result.is_error:
            reader.result.is_error = True
            reader.result.error = str(exc).splitlines()[0]
            status = getattr(exc, "api_error_status", None)
            reader.result.api_error_status = status if isinstance(status, int) else None
            reader.result.crashed = not reader.ended
            code = getattr(exc, "exit_code", None)
            if reader.result.crashed and isinstance(code, int):
                reader.result.error = _exit_reason(code)
    return reader.finish()


def _exit_reason(code: int) -> str:
    """What an exit code of the agent's process means (the launcher exits 128+N on signal N)."""
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        with contextlib.suppress(ValueError):
            return f"its process was killed ({signal.Signals(number).name})"
    return f"its process exited with code {code}"


def _model_usage(model: str, figures: Mapping[str, Any]) -> MessageUsage:
    """A turn's usage of one model, from the result's exact per-model totals."""
    cost = figures.get("costUSD")
    return MessageUsage(
        model=model,
        input_tokens=int(figures.get("inputTokens") or 0),
        output_tokens=int(figures.get("outputTokens") or 0),
        cache_read_tokens=int(figures.get("cacheReadInputTokens") or 0),
        cache_write_tokens=int(figures.get("cacheCreationInputTokens") or 0),
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )
