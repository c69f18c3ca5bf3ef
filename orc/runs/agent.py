"""One turn of Claude Code, driven through Anthropic's ``claude-agent-sdk``.

A turn sends one prompt (starting a session, or resuming the phase's session so context
carries over) and reads the agent's messages until its result. Each message becomes a
transcript item as it arrives. A turn's tokens come from its result's exact per-model totals
(streamed messages carry the usage of their start, before output is counted); only a turn cut
short falls back to those. The CLI runs under ``orc-agent-exec``, which gives it only the
environment orc chose and kills its whole process group when the turn ends or is cancelled.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orc.runs.agent_exec import CLI, ENV_KEYS, PIDFILE
from orc.runs.transcript import TranscriptItem

OnItem = Callable[[TranscriptItem], Awaitable[None]]


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


def bundled_cli() -> str:
    """The Claude Code CLI that ships inside claude-agent-sdk's wheel."""
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return str(path) if path.exists() else (shutil.which("claude") or "claude")


def launcher_path() -> str:
    """``orc-agent-exec`` beside this Python (the console script of this installation)."""
    beside = Path(sys.executable).parent / "orc-agent-exec"
    return str(beside) if beside.exists() else (shutil.which("orc-agent-exec") or str(beside))


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


async def run_turn(
    config: AgentConfig,
    *,
    cwd: Path,
    env: Mapping[str, str],
    prompt: str,
    session_id: str | None,
    pidfile: Path,
    on_item: OnItem,
) -> TurnResult:
    """Send ``prompt`` (resuming ``session_id`` if given) and follow the agent to its result."""
    from claude_agent_sdk import (
        AssistantMessage,
        ClaudeAgentOptions,
        ClaudeSDKError,
        ResultMessage,
        TextBlock,
        ThinkingBlock,
        ToolResultBlock,
        ToolUseBlock,
        UserMessage,
        query,
    )

    launch_env = {
        **env,
        CLI: config.cli,
        ENV_KEYS: ",".join(sorted(env)),
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
    result = TurnResult(session_id=session_id)
    seen: dict[str, MessageUsage] = {}
    last_text: list[str] = []
    await on_item(TranscriptItem("prompt", {"text": prompt}))
    try:
        async for message in query(prompt=prompt, options=options):
            if isinstance(message, AssistantMessage):
                if message.session_id:
                    result.session_id = message.session_id
                if message.usage and message.message_id:
                    # Only a fallback for a turn cut short: streamed messages carry the
                    # usage of their start (output tokens not counted yet).
                    seen[message.message_id] = _usage(message.model, message.usage)
                texts = []
                for block in message.content:
                    if isinstance(block, TextBlock):
                        texts.append(block.text)
                        await on_item(TranscriptItem("text", {"text": block.text}))
                    elif isinstance(block, ThinkingBlock):
                        await on_item(TranscriptItem("thinking", {"text": block.thinking}))
                    elif isinstance(block, ToolUseBlock):
                        await on_item(
                            TranscriptItem(
                                "tool_use",
                                {"id": block.id, "name": block.name, "input": block.input},
                            )
                        )
                if texts and message.parent_tool_use_id is None:
                    last_text = texts
            elif isinstance(message, UserMessage) and isinstance(message.content, list):
                for block in message.content:
                    if isinstance(block, ToolResultBlock):
                        await on_item(
                            TranscriptItem(
                                "tool_result",
                                {
                                    "tool_use_id": block.tool_use_id,
                                    "content": _tool_result_text(block.content),
                                    "is_error": bool(block.is_error),
                                },
                            )
                        )
            elif isinstance(message, ResultMessage):
                result.session_id = message.session_id or result.session_id
                result.cost_usd = message.total_cost_usd
                result.is_error = message.is_error
                result.api_error_status = message.api_error_status
                if message.model_usage:
                    result.usage = [
                        _model_usage(model, figures)
                        for model, figures in message.model_usage.items()
                    ]
                if message.is_error:
                    result.error = (
                        message.result or ", ".join(message.errors or []) or (message.subtype)
                    )
                await on_item(
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
    except ClaudeSDKError as exc:
        if not result.is_error:
            result.is_error = True
            result.error = str(exc).splitlines()[0]
        status = getattr(exc, "api_error_status", None)
        result.api_error_status = result.api_error_status or status
    result.final_text = "\n".join(last_text)
    if not result.usage:
        result.usage = list(seen.values())
    return result


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
