"""A fake Anthropic Messages API on loopback, so tests run the real Claude Code CLI offline.

A test scripts each conversation as a list of replies (a turn of text and/or tool calls, or a
failure); every `POST /v1/messages` takes the next reply of the conversation whose working
directory the request names ("Primary working directory: …" in its system text), or of the
default conversation. Turns stream server-sent events as the real API does. Every request is
recorded so a test can assert what the agent sent.

    with FakeAnthropic() as fake:
        fake.script([tool_calls(write(CWD + "/a.txt", "hi")), text("Done.")])
        env = fake.agent_env(home)  # ANTHROPIC_BASE_URL etc. for the CLI
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# Placeholder in a tool call's input, replaced by the working directory the request names.
CWD = "{cwd}"

_WORKDIR = re.compile(r"Primary working directory: (\S+)")

# The outcome a phase's last message ends with (orc's prompts ask for it): DONE % "summary".
DONE = '{"status": "complete", "summary": "%s"}'


@dataclass
class Usage:
    """Token figures of one turn, as the API reports them."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass
class ToolCall:
    """One `tool_use` block; strings in `input` may hold CWD."""

    name: str
    input: dict[str, Any]


@dataclass
class Turn:
    """One assistant message: optional text, then tool calls (stop_reason follows them)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


@dataclass
class Failure:
    """An HTTP error answer with the API's JSON error body."""

    status: int
    error_type: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stall:
    """Send `message_start`, then nothing for `seconds`, then drop the connection."""

    seconds: float
    usage: Usage = field(default_factory=Usage)


@dataclass
class Cut:
    """Stream the first `events` events of `turn`, then drop the connection mid-stream."""

    turn: Turn
    events: int = 3


Reply = Turn | Failure | Stall | Cut


def text(message: str, usage: Usage | None = None) -> Turn:
    """A final answer (stop_reason end_turn)."""
    return Turn(text=message, usage=usage or Usage())


def tool_calls(*calls: ToolCall, usage: Usage | None = None, say: str = "") -> Turn:
    """A turn that calls tools (stop_reason tool_use)."""
    return Turn(text=say, tool_calls=list(calls), usage=usage or Usage())


def write(path: str, content: str) -> ToolCall:
    """Claude Code's Write tool; it wants an absolute path (use CWD)."""
    return ToolCall("Write", {"file_path": path, "content": content})


def edit(path: str, old: str, new: str) -> ToolCall:
    """Claude Code's Edit tool (the file must have been read or written in the session)."""
    return ToolCall("Edit", {"file_path": path, "old_string": old, "new_string": new})


def bash(command: str, description: str = "Run a command") -> ToolCall:
    """Claude Code's Bash tool."""
    return ToolCall("Bash", {"command": command, "description": description})


def unauthorized() -> Failure:
    """What the API answers to a bad key."""
    return Failure(401, "authentication_error", "invalid x-api-key")


def rate_limited(retry_after: int = 1) -> Failure:
    """429 with retry-after, as the API sends it."""
    return Failure(
        429,
        "rate_limit_error",
        "This request would exceed your rate limit.",
        {"retry-after": str(retry_after)},
    )


def overloaded() -> Failure:
    """529: the API is overloaded."""
    return Failure(529, "overloaded_error", "Overloaded")


def server_error() -> Failure:
    """500: an internal error of the API."""
    return Failure(500, "api_error", "Internal server error")


@dataclass
class RecordedRequest:
    """One request the fake received, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    answer: str = ""

    @property
    def system_text(self) -> str:
        """The system prompt as one string (the API takes a string or text blocks)."""
        system = self.body.get("system", "") if isinstance(self.body, dict) else ""
        if isinstance(system, str):
            return system
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation the agent sent."""
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def workdir(self) -> str | None:
        """The working directory the request names, if any."""
        # The CLI names it in the system text, in a message with role "system" (Claude Code's
        # preset prompt), or in a reminder of the first user message (a caller's own prompt).
        for chunk in [self.system_text, *self.texts(("system", "user"))]:
            found = _WORKDIR.search(chunk)
            if found:
                return found.group(1)
        return None

    def user_texts(self) -> list[str]:
        """Every text the user side sent, in order (prompts, reminders)."""
        return self.texts(("user",))

    def texts(self, roles: tuple[str, ...]) -> list[str]:
        """Every text block of messages with these roles, in order."""
        texts = []
        for message in self.messages:
            if message.get("role") not in roles:
                continue
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            for block in content or []:
                if block.get("type") == "text" and "text" in block:
                    texts.append(block["text"])
        return texts

    def tool_results(self) -> list[dict[str, Any]]:
        """Every `tool_result` block in the conversation, in order."""
        return [
            block
            for message in self.messages
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]


class FakeAnthropic:
    """The fake API server; start it with `with FakeAnthropic() as fake:`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """``host``: loopback, or e.g. Docker's bridge gateway for an agent in a container."""
        self._lock = threading.Lock()
        self._conversations: dict[str | None, deque[Reply]] = {None: deque()}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """What ANTHROPIC_BASE_URL must be."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving; stalled streams end at once."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def script(self, replies: list[Reply], workdir: str | None = None) -> None:
        """Queue replies for the conversation run in `workdir` (None: any other request)."""
        with self._lock:
            self._conversations.setdefault(workdir, deque()).extend(replies)

    def forget(self) -> None:
        """Drop the replies not asked for (a run that ended before it used them all)."""
        with self._lock:
            self._conversations.clear()
            self._conversations[None] = deque()

    def agent_env(self, home: str) -> dict[str, str]:
        """Environment that points the Claude Code CLI at this fake, with no other traffic."""
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-fake-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "HOME": home,
            # A proxy from the environment must not catch loopback traffic.
            "NO_PROXY": "127.0.0.1,localhost",
        }

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The `POST /v1/messages` requests, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/messages" and r.method == "POST"]

    @property
    def other_requests(self) -> list[RecordedRequest]:
        """Every request to another endpoint (count_tokens, HEAD /, ...)."""
        with self._lock:
            return [r for r in self.requests if r.path != "/v1/messages"]

    def remaining(self, workdir: str | None = None) -> int:
        """Replies still queued for a conversation (0 when the agent used them all)."""
        with self._lock:
            return len(self._conversations.get(workdir, ()))

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            workdir = request.workdir
            queue = self._conversations.get(workdir)
            if not queue:
                queue = self._conversations[None]
            return queue.popleft() if queue else None

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self._ids):04d}"


def _events(fake: FakeAnthropic, turn: Turn, model: str, workdir: str | None) -> Iterator[str]:
    """The server-sent events of one streamed assistant message."""
    usage = turn.usage
    start_usage = {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_creation_input_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens,
        "output_tokens": 1,
    }
    message: dict[str, Any] = {
        "id": fake._next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    yield _sse("message_start", {"type": "message_start", "message": message})
    index = 0
    if turn.text:
        yield _sse("content_block_start", _block_start(index, {"type": "text", "text": ""}))
        # Two deltas, as the API splits text: the agent must join them.
        half = len(turn.text) // 2
        for piece in (turn.text[:half], turn.text[half:]):
            delta = {"type": "text_delta", "text": piece}
            yield _sse("content_block_delta", _block_delta(index, delta))
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    for call in turn.tool_calls:
        block: dict[str, Any] = {"type": "tool_use", "id": fake._next_id("toolu")}
        block.update(name=call.name, input={})
        yield _sse("content_block_start", _block_start(index, block))
        arguments = json.dumps(_with_workdir(call.input, workdir or ""))
        delta = {"type": "input_json_delta", "partial_json": arguments}
        yield _sse("content_block_delta", _block_delta(index, delta))
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    stop_reason = "tool_use" if turn.tool_calls else "end_turn"
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage.output_tokens},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


def _block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _with_workdir(value: Any, workdir: str) -> Any:
    if isinstance(value, str):
        return value.replace(CWD, workdir)
    if isinstance(value, dict):
        return {k: _with_workdir(v, workdir) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_workdir(v, workdir) for v in value]
    return value


def _handler_for(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.fake = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    """Answers as the Messages API does; chunked streams so a cut is a real protocol error."""

    protocol_version = "HTTP/1.1"
    fake: FakeAnthropic

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the fake's record is self.fake.requests

    def do_HEAD(self) -> None:
        self._record().answer = "200 empty"
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._not_found(self._record())

    def do_POST(self) -> None:
        request = self._record()
        path = request.path
        if path == "/v1/messages/count_tokens":
            size = len(json.dumps(request.body))
            request.answer = "200 count_tokens"
            self._json(200, {"input_tokens": max(1, size // 4)})
        elif path == "/v1/messages":
            self._messages(request)
        else:
            self._not_found(request)

    def _record(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = RecordedRequest(
            method=self.command,
            path=urlsplit(self.path).path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        self.fake._record(request)
        return request

    def _messages(self, request: RecordedRequest) -> None:
        reply = self.fake._next_reply(request)
        model = request.body.get("model", "claude-fake") if isinstance(request.body, dict) else ""
        if reply is None:
            reply = text("fake-anthropic: no scripted reply left")
            request.answer = "unscripted"
        if reply_needs_workdir(reply) and request.workdir is None:
            # Never let CWD become "" and a scripted Write land in "/".
            reply = Failure(400, "invalid_request_error", "fake: no working directory named")
        if isinstance(reply, Failure):
            request.answer = f"{reply.status} {reply.error_type}"
            error = {"type": reply.error_type, "message": reply.message}
            body = {"type": "error", "error": error, "request_id": self.fake._next_id("req")}
            self._json(reply.status, body, reply.headers)
            return
        if not (isinstance(request.body, dict) and request.body.get("stream")):
            request.answer = request.answer or "200 message"
            self._json(200, _whole_message(self.fake, reply, model, request.workdir))
            return
        self._start_stream()
        if isinstance(reply, Stall):
            request.answer = f"stall {reply.seconds}s"
            events = _events(self.fake, Turn(usage=reply.usage), model, request.workdir)
            self._chunk(next(events))
            self.fake._stopping.wait(reply.seconds)
            self.close_connection = True
            return
        if isinstance(reply, Cut):
            request.answer = f"cut after {reply.events} events"
            events = _events(self.fake, reply.turn, model, request.workdir)
            for event in itertools.islice(events, reply.events):
                self._chunk(event)
            self.close_connection = True
            return
        request.answer = request.answer or "200 stream"
        for event in _events(self.fake, reply, model, request.workdir):
            self._chunk(event)
        self._chunk("")  # the last chunk

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", self.fake._next_id("req"))
        self.end_headers()

    def _chunk(self, data: str) -> None:
        payload = data.encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _not_found(self, request: RecordedRequest) -> None:
        request.answer = "404"
        error = {"type": "not_found_error", "message": f"Not found: {request.path}"}
        self._json(404, {"type": "error", "error": error})


def reply_needs_workdir(reply: Reply) -> bool:
    """Whether a reply's tool calls use CWD."""
    turn = reply.turn if isinstance(reply, Cut) else reply
    if not isinstance(turn, Turn):
        return False
    return any(CWD in json.dumps(call.input) for call in turn.tool_calls)


def _whole_message(fake: FakeAnthropic, reply: Reply, model: str, workdir: str | None) -> Any:
    """A non-streamed answer (the CLI streams; side calls might not)."""
    turn = reply if isinstance(reply, Turn) else text("fake-anthropic: not streamed")
    content: list[dict[str, Any]] = []
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": fake._next_id("toolu"),
                "name": call.name,
                "input": _with_workdir(call.input, workdir or ""),
            }
        )
    return {
        "id": fake._next_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if turn.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": turn.usage.input_tokens,
            "output_tokens": turn.usage.output_tokens,
            "cache_read_input_tokens": turn.usage.cache_read_input_tokens,
            "cache_creation_input_tokens": turn.usage.cache_creation_input_tokens,
        },
    }
