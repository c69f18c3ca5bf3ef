"""The real Claude Code CLI, driven through claude_agent_sdk, against the fake Anthropic API.

These tests pin what orc's run engine can rely on (claude-agent-sdk 0.2.189, bundled CLI
2.1.332): what the SDK yields, what it raises, how the CLI retries, and how a run stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import pytest

from tests.fake_anthropic import (
    CWD,
    Cut,
    FakeAnthropic,
    Stall,
    Usage,
    bash,
    edit,
    overloaded,
    rate_limited,
    text,
    tool_calls,
    unauthorized,
    write,
)
from tests.support import descendants, is_alive, wait_for

# claude_agent_sdk is imported where it is used, not here: importing it (its MCP types) costs
# ~1.5 s of CPU, which every xdist worker would pay when it collects this module.
if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, Message, ResultMessage

TOOLS = ["Write", "Edit", "Bash", "Read"]


@dataclass
class Run:
    """What one query yielded, and what it raised at the end."""

    messages: list[Message] = field(default_factory=list)
    error: BaseException | None = None

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.messages if isinstance(m, kind)]

    @property
    def result(self) -> ResultMessage:
        from claude_agent_sdk import ResultMessage

        (result,) = self.of(ResultMessage)
        return result

    def retries(self) -> list[dict[str, Any]]:
        """The CLI's `api_retry` notices (one per retried API call)."""
        from claude_agent_sdk import SystemMessage

        return [m.data for m in self.of(SystemMessage) if m.subtype == "api_retry"]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository to work in, as a task's worktree is."""
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "README.md").write_text("# demo\n")
    return path


def agent_options(fake: FakeAnthropic, repo: Path, **settings: Any) -> ClaudeAgentOptions:
    """Options as orc will pass them: the fake's env, a HOME of its own, acceptEdits (root)."""
    from claude_agent_sdk import ClaudeAgentOptions

    home = repo.parent / "agent-home"
    home.mkdir(exist_ok=True)
    env = fake.agent_env(str(home))
    env.update(settings.pop("env", {}))
    return ClaudeAgentOptions(
        cwd=str(repo),
        env=env,
        # As root the CLI refuses bypassPermissions; acceptEdits with allowed tools works.
        permission_mode="acceptEdits",
        allowed_tools=TOOLS,
        **settings,
    )


async def run_query(prompt: str, options: ClaudeAgentOptions) -> Run:
    from claude_agent_sdk import query

    run = Run()
    try:
        async for message in query(prompt=prompt, options=options):
            run.messages.append(message)
    except Exception as exc:
        run.error = exc
    return run


async def drain(stream: AsyncIterator[Message], into: list[Message]) -> None:
    async for message in stream:
        into.append(message)


def claude_processes() -> list[psutil.Process]:
    return [p for p in descendants(os.getpid()) if p.name() == "claude"]


def claude_process() -> psutil.Process:
    """The CLI the SDK started (the SDK does not expose its pid)."""
    (cli,) = claude_processes()
    return cli


@pytest.fixture(autouse=True)
def no_cli_left_behind() -> Iterator[None]:
    """A test that fails mid-turn must not leave its CLI to the next test (which finds two)."""
    yield
    for process in claude_processes():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


async def test_it_writes_edits_and_runs_in_the_working_directory_and_reports_usage(
    fake: FakeAnthropic, repo: Path
) -> None:
    """Tool calls really change the worktree; usage and session come back in typed messages.

    Per-message usage: the CLI yields one AssistantMessage per content block (text and tool call
    of one API message share `message_id`), and its `usage.output_tokens` is the figure of
    `message_start` (1 here), not the final one of `message_delta`. The true per-run totals are
    in ResultMessage.usage; per-message accounting must dedupe by message_id and cannot trust
    output_tokens there.
    """
    from claude_agent_sdk import (
        AssistantMessage,
        SystemMessage,
        TextBlock,
        ToolUseBlock,
        UserMessage,
    )

    fake.script(
        [
            tool_calls(
                write(CWD + "/hello.txt", "hello\n"),
                say="I will write the file.",
                usage=Usage(100, 20, cache_read_input_tokens=3, cache_creation_input_tokens=4),
            ),
            tool_calls(edit(CWD + "/hello.txt", "hello", "hello, world"), usage=Usage(110, 21)),
            tool_calls(bash("cat " + CWD + "/hello.txt"), usage=Usage(120, 22)),
            text("All done.", Usage(130, 23, cache_read_input_tokens=5)),
        ]
    )

    run = await run_query("Write hello.txt", agent_options(fake, repo))

    assert run.error is None
    assert (repo / "hello.txt").read_text() == "hello, world\n"
    result = run.result
    assert (result.subtype, result.is_error, result.result) == ("success", False, "All done.")
    assert result.num_turns == 4
    assert result.usage is not None
    assert result.usage["input_tokens"] == 100 + 110 + 120 + 130
    assert result.usage["output_tokens"] == 20 + 21 + 22 + 23
    assert result.usage["cache_read_input_tokens"] == 3 + 5
    assert result.usage["cache_creation_input_tokens"] == 4
    assert result.total_cost_usd is not None and result.total_cost_usd > 0
    init = run.of(SystemMessage)[0]
    assert init.subtype == "init" and init.data["session_id"] == result.session_id
    assert init.data["model"] == fake.message_requests[0].body["model"]

    assistant = run.of(AssistantMessage)
    kinds = [TextBlock, ToolUseBlock, ToolUseBlock, ToolUseBlock, TextBlock]
    assert [type(m.content[0]) for m in assistant] == kinds
    assert assistant[0].message_id == assistant[1].message_id  # one API message, two blocks
    assert assistant[-1].content == [TextBlock("All done.")]
    assert {m.session_id for m in assistant} == {result.session_id}
    assert [m.usage["input_tokens"] for m in assistant if m.usage] == [100, 100, 110, 120, 130]
    assert {m.usage["output_tokens"] for m in assistant if m.usage} == {1}
    tool_results = [b for m in run.of(UserMessage) for b in m.content if not isinstance(b, str)]
    assert len(tool_results) == 3

    # What the agent sent: the prompt, then each tool's result in the next request.
    requests = fake.message_requests
    assert len(requests) == 4
    assert all(r.body["stream"] is True and r.workdir == str(repo) for r in requests)
    assert requests[0].user_texts()[-1] == "Write hello.txt"
    assert "hello, world" in str(requests[3].tool_results()[-1]["content"])
    assert {r.headers["x-claude-code-session-id"] for r in requests} == {result.session_id}
    assert fake.other_requests == []  # no count_tokens, no HEAD: only POST /v1/messages
    assert fake.remaining() == 0


async def test_it_resumes_a_session_with_the_earlier_conversation(
    fake: FakeAnthropic, repo: Path
) -> None:
    """`resume=session_id` in a new CLI process sends the whole earlier conversation again."""
    fake.script([tool_calls(write(CWD + "/a.txt", "a\n")), text("First done.")])
    first = await run_query("First prompt", agent_options(fake, repo))
    assert first.error is None
    session = first.result.session_id

    fake.script([text("Second done.")])
    second = await run_query("Second prompt", agent_options(fake, repo, resume=session))

    assert second.error is None
    assert second.result.result == "Second done."
    assert second.result.session_id == session
    resumed = fake.message_requests[-1]
    assert resumed.headers["x-claude-code-session-id"] == session
    assert "First prompt" in resumed.user_texts()
    assert resumed.user_texts()[-1] == "Second prompt"
    assert len(resumed.tool_results()) == 1
    earlier_answers = [
        block.get("text")
        for message in resumed.messages
        if message["role"] == "assistant"
        for block in message["content"]
    ]
    assert "First done." in earlier_answers


async def test_an_invalid_key_is_retried_then_raises_result_error(
    fake: FakeAnthropic, repo: Path
) -> None:
    """401 is retried like any API error (10 times by default, backoff ~0.5 s doubling: minutes).

    Measured with the defaults: retries at 0.58, 1.1, 2.1, 4.5, 9.5, 16.6, 38.4 s ... of
    `max_retries` 10. So the run engine must set CLAUDE_CODE_MAX_RETRIES or stop the run on the
    first `api_retry` notice with `error_status` 401. When retries end, the SDK yields a
    synthetic AssistantMessage (model "<synthetic>", error "authentication_failed", text
    "Invalid API key · Fix external API key"), a ResultMessage (is_error, subtype "success",
    api_error_status 401, terminal_reason "api_error"), then `query()` raises ResultError (a
    ProcessError) with the same fields and exit_code 1.
    """
    from claude_agent_sdk import AssistantMessage, ResultError

    fake.script([unauthorized()] * 5)
    options = agent_options(fake, repo, env={"CLAUDE_CODE_MAX_RETRIES": "1"})

    run = await run_query("Hello", options)

    assert [r["error_status"] for r in run.retries()] == [401]
    assert run.retries()[0]["error"] == "authentication_failed"
    assert len(fake.message_requests) == 2
    (synthetic,) = run.of(AssistantMessage)
    assert (synthetic.model, synthetic.error) == ("<synthetic>", "authentication_failed")
    result = run.result
    assert result.is_error and result.api_error_status == 401
    assert result.terminal_reason == "api_error"
    assert result.result == "Invalid API key · Fix external API key"
    assert isinstance(run.error, ResultError)
    assert run.error.api_error_status == 401 and run.error.exit_code == 1
    assert run.error.terminal_reason == "api_error"
    assert run.error.session_id == result.session_id


async def test_rate_limits_and_overload_are_retried_with_backoff(
    fake: FakeAnthropic, repo: Path
) -> None:
    """429 and 529 are retried by the CLI, which honours retry-after; the run then succeeds.

    One budget of `max_retries` (10 by default, CLAUDE_CODE_MAX_RETRIES) counts every retry of
    one API call. Delay ≈ 0.5 s x 2^(attempt-1), +0-25 % jitter; measured 529 delays:
    0.52, 1.13, 2.05, 4.7, 8.2, 19.7, 35.6 s (429 and 500 the same), so a call gives up after
    minutes. A 429 with retry-after waits at least that long. Each retry yields
    SystemMessage(subtype="api_retry", data={attempt, max_retries, retry_delay_ms,
    error_status, error: "rate_limit" | "overloaded" | "server_error"}).
    """
    fake.script([rate_limited(retry_after=2), overloaded(), overloaded(), text("Finally.")])

    run = await run_query("Hello", agent_options(fake, repo))

    assert run.error is None and run.result.result == "Finally."
    retries = run.retries()
    assert [(r["attempt"], r["error_status"]) for r in retries] == [(1, 429), (2, 529), (3, 529)]
    assert [r["error"] for r in retries] == ["rate_limit", "overloaded", "overloaded"]
    assert {r["max_retries"] for r in retries} == {10}
    # The CLI's own figures (load-independent): retry-after for the 429, then backoff + jitter.
    delays = [r["retry_delay_ms"] / 1000 for r in retries]
    assert 2.0 <= delays[0] < 2.6 and 1.0 <= delays[1] < 1.3 and 2.0 <= delays[2] < 2.6
    # And it really waited them (the upper bound leaves room for a loaded machine).
    arrivals = [r.at for r in fake.message_requests]
    for delay, (earlier, later) in zip(delays, itertools.pairwise(arrivals), strict=True):
        assert delay - 0.05 <= later - earlier < delay + 2


async def test_overload_past_the_retry_budget_raises_result_error(
    fake: FakeAnthropic, repo: Path
) -> None:
    """When retries run out: a synthetic message, an error result, then ResultError (529)."""
    from claude_agent_sdk import ResultError

    fake.script([overloaded()] * 4)
    options = agent_options(fake, repo, env={"CLAUDE_CODE_MAX_RETRIES": "2"})

    run = await run_query("Hello", options)

    assert len(fake.message_requests) == 3
    assert [r["error_status"] for r in run.retries()] == [529, 529]
    assert run.result.is_error and run.result.api_error_status == 529
    assert run.result.result is not None and run.result.result.startswith("API Error: 529")
    assert isinstance(run.error, ResultError)
    assert run.error.api_error_status == 529 and run.error.terminal_reason == "api_error"


async def test_a_dropped_stream_is_retried_and_its_start_is_still_counted(
    fake: FakeAnthropic, repo: Path
) -> None:
    """A stream cut mid-way, or one that stalls and then drops, is retried at once.

    The notice has error_status None and error "unknown". A dropped attempt's `message_start`
    usage is added to the run's usage (10 each here), so the result counts more than the
    successful attempt's 10. Whether the CLI counts one dropped start or both depends on when
    it reads the cut stream: a cut plus a stall then success has given 20 and, on a loaded
    machine, 30 (measured), so either is accepted; what orc bills from the result is never less
    than the successful attempt.
    """
    fake.script([Cut(text("cut me off please"), events=3), Stall(1.5), text("Recovered.")])

    run = await run_query("Hello", agent_options(fake, repo))

    assert run.error is None and run.result.result == "Recovered."
    assert [(r["error_status"], r["error"]) for r in run.retries()] == [(None, "unknown")] * 2
    assert run.result.usage is not None and run.result.usage["input_tokens"] in (20, 30)
    assert [r.answer for r in fake.message_requests] == [
        "cut after 3 events",
        "stall 1.5s",
        "200 stream",
    ]


async def test_a_stalled_stream_waits_until_interrupted_and_the_session_goes_on(
    fake: FakeAnthropic, repo: Path
) -> None:
    """A stream that stalls after message_start is waited on, silently (API_TIMEOUT_MS: 600 s).

    Measured: a 25 s stall was waited out with no message at all, even with
    CLAUDE_STREAM_IDLE_TIMEOUT_MS=3000 and CLAUDE_ENABLE_STREAM_WATCHDOG=1; so orc's idle
    watchdog must act. `ClaudeSDKClient.interrupt()` ends the turn at once: a UserMessage
    "[Request interrupted by user]", then ResultMessage(subtype "error_during_execution",
    is_error True); the CLI stays up and the same session takes the next query.
    """
    from claude_agent_sdk import (
        ClaudeSDKClient,
        ResultMessage,
        SystemMessage,
        TextBlock,
        UserMessage,
    )

    fake.script([Stall(20), text("After the interrupt.")])
    client = ClaudeSDKClient(agent_options(fake, repo))
    await client.connect()
    try:
        await client.query("Hello")
        turn: list[Message] = []
        reading = asyncio.create_task(drain(client.receive_response(), turn))
        await wait_for(lambda: len(fake.message_requests) == 1)
        await asyncio.sleep(1.5)
        assert not [m for m in turn if not isinstance(m, SystemMessage)]  # silence

        started = time.monotonic()
        await client.interrupt()
        await asyncio.wait_for(reading, 5)
        assert time.monotonic() - started < 2

        result = turn[-1]
        assert isinstance(result, ResultMessage)
        assert (result.subtype, result.is_error) == ("error_during_execution", True)
        assert result.terminal_reason == "aborted_streaming"
        interrupted = [m for m in turn if isinstance(m, UserMessage)]
        assert interrupted and interrupted[-1].content == [
            TextBlock("[Request interrupted by user]")
        ]

        await client.query("Go on")
        after: list[Message] = []
        await asyncio.wait_for(drain(client.receive_response(), after), 15)
        final = after[-1]
        assert isinstance(final, ResultMessage) and final.result == "After the interrupt."
        assert final.session_id == result.session_id
        assert fake.message_requests[-1].user_texts()[-1] == "Go on"
    finally:
        await client.disconnect()
    # disconnect() ends the CLI; give it the time a loaded machine needs to exit.
    _, alive = psutil.wait_procs(claude_processes(), timeout=10)
    assert alive == []


async def test_interrupt_during_a_tool_kills_the_tool(fake: FakeAnthropic, repo: Path) -> None:
    """interrupt() while Bash runs: the tool's processes end and the turn ends at once."""
    from claude_agent_sdk import ClaudeSDKClient, ResultMessage

    fake.script([tool_calls(bash(_long_command("interrupt"))), text("unused")])
    client = ClaudeSDKClient(agent_options(fake, repo))
    await client.connect()
    try:
        await client.query("Run it")
        turn: list[Message] = []
        reading = asyncio.create_task(drain(client.receive_response(), turn))
        cli = claude_process()
        await wait_for(lambda: _marked(cli, "interrupt"))
        tree = descendants(cli.pid)

        await client.interrupt()
        await asyncio.wait_for(reading, 5)

        result = turn[-1]
        assert isinstance(result, ResultMessage) and result.subtype == "error_during_execution"
        assert result.terminal_reason == "aborted_tools"
        await wait_for(lambda: not [p for p in tree if is_alive(p)], timeout=3)
    finally:
        await client.disconnect()


async def test_sigkill_of_the_cli_orphans_its_tools_unless_the_tree_is_killed(
    fake: FakeAnthropic, repo: Path
) -> None:
    """SIGKILL of the CLI alone leaves the Bash tool's shell running, reparented away.

    The SDK starts the CLI in orc's own process group (no new session), so a cancel must
    collect the CLI's descendants first and kill them all. The SDK then raises ProcessError
    (exit_code -9) from the message stream. SIGTERM instead lets the CLI kill its tools
    (their result "Exit code 137") and exit 143: ProcessError(exit_code=143).
    """
    from claude_agent_sdk import ClaudeSDKClient, ProcessError

    fake.script([tool_calls(bash(_long_command("kill"))), text("unused")])
    client = ClaudeSDKClient(agent_options(fake, repo))
    await client.connect()
    received: list[Message] = []
    try:
        await client.query("Run it")
        cli = claude_process()
        reading = asyncio.create_task(drain(client.receive_response(), received))
        await wait_for(lambda: _marked(cli, "kill"))
        tools = descendants(cli.pid)

        cli.kill()
        with pytest.raises(ProcessError) as raised:
            await asyncio.wait_for(reading, 5)
        assert raised.value.exit_code == -9

        await asyncio.sleep(0.5)
        orphans = [p for p in tools if is_alive(p)]
        assert orphans, "the tool's processes outlived the CLI"
        assert all(p.ppid() != cli.pid for p in orphans)
        for process in orphans:
            process.kill()
        await wait_for(lambda: not [p for p in orphans if is_alive(p)], timeout=3)
    finally:
        await client.disconnect()


async def test_sigterm_of_the_cli_ends_its_tools(fake: FakeAnthropic, repo: Path) -> None:
    """SIGTERM: the CLI kills its tools itself and exits 143; the SDK raises ProcessError."""
    from claude_agent_sdk import ClaudeSDKClient, ProcessError

    fake.script([tool_calls(bash(_long_command("term"))), text("unused")])
    client = ClaudeSDKClient(agent_options(fake, repo))
    await client.connect()
    received: list[Message] = []
    try:
        await client.query("Run it")
        cli = claude_process()
        reading = asyncio.create_task(drain(client.receive_response(), received))
        await wait_for(lambda: _marked(cli, "term"))
        tools = descendants(cli.pid)

        cli.terminate()
        with pytest.raises(ProcessError) as raised:
            await asyncio.wait_for(reading, 10)
        assert raised.value.exit_code == 143
        await wait_for(lambda: not [p for p in tools if is_alive(p)], timeout=3)
    finally:
        await client.disconnect()


def _long_command(mark: str) -> str:
    # The CLI blocks a standalone `sleep N` ("use run_in_background"); a python sleep passes.
    return f"python3 -c 'import time; time.sleep(25)' {mark}-marker"


def _marked(cli: psutil.Process, mark: str) -> bool:
    """Whether the long tool command is running under the CLI."""
    for process in descendants(cli.pid):
        try:
            if process.name().startswith("python") and f"{mark}-marker" in process.cmdline():
                return True
        except psutil.NoSuchProcess:
            continue
    return False


def test_the_fake_answers_other_endpoints_and_never_resolves_cwd_to_root(
    fake: FakeAnthropic,
) -> None:
    """Endpoints the CLI might call get harmless answers; a CWD with no workdir is refused."""
    fake.script([tool_calls(write(CWD + "/x.txt", "x"))])
    with httpx.Client(base_url=fake.base_url, trust_env=False) as http:
        assert http.head("/").status_code == 200
        counted = http.post("/v1/messages/count_tokens", json={"messages": []})
        assert counted.status_code == 200 and counted.json()["input_tokens"] >= 1
        missing = http.get("/v1/models")
        assert missing.status_code == 404 and missing.json()["type"] == "error"
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        refused = http.post("/v1/messages", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert [r.answer for r in fake.other_requests] == ["200 empty", "200 count_tokens", "404"]
