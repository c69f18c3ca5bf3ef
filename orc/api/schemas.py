"""Request bodies and query parameters, validated strictly (unknown fields are errors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sanic import Request

from orc.api.json_body import parse_json
from orc.api.openapi_ext import openapi
from orc.auth.access_tokens import DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS
from orc.errors import ApiError

MAX_BATCH = 1000
# Row ids: 32-bit columns on PostgreSQL (tasks, users, tokens, projects), 64-bit for events and
# transcript entries; a larger number can name nothing and would overflow the database driver.
MAX_ROW_ID = 2**31 - 1
MAX_EVENT_ID = 2**62
MAX_DIGITS = 30  # more can only be out of range; int() of a long one costs quadratic time
MAX_TOKENS = 10**9  # per call; far above any model's context, far below overflow
FUTURE_TOLERANCE = timedelta(minutes=5)

Weight = Literal["trivial", "small", "medium", "large"]
PhaseName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TokenCount = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold U+0000; refuse it everywhere so both databases agree.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class TaskCreate(StrictBody):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=20_000)
    weight: Weight = "medium"
    created_by: str = Field(default="", max_length=255)
    # A project's name or path; default: the only registered project (or none).
    project: str | None = Field(default=None, min_length=1, max_length=1024)
    base: str | None = Field(default=None, min_length=1, max_length=255)
    budget_usd: float | None = Field(default=None, gt=0, le=1_000_000)


class ResumeBody(StrictBody):
    note: str | None = Field(default=None, max_length=20_000)


class ProjectCreate(StrictBody):
    path: str = Field(min_length=1, max_length=1024)
    name: str | None = Field(default=None, min_length=1, max_length=100)


class TaskPatch(StrictBody):
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    weight: Weight | None = None
    current_phase: PhaseName | None = None
    status: Literal["planned", "blocked"] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> TaskPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give at least one field")
        for name in ("title", "description", "weight", "status"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class UsageIn(StrictBody):
    model: str = Field(min_length=1, max_length=128)
    phase: str = Field(default="", max_length=64)
    input_tokens: TokenCount = 0
    output_tokens: TokenCount = 0
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    occurred_at: datetime | None = None

    @field_validator("occurred_at")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            raise ValueError("occurred_at is out of range") from None
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError("occurred_at is in the future")
        return value


class UsageBatch(StrictBody):
    events: list[UsageIn] = Field(min_length=1, max_length=MAX_BATCH)


Body = TypeVar("Body", bound=BaseModel)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _load_json(request: Request) -> object:
    raw = request.body or b""
    if not raw.strip():
        raise ApiError(400, "invalid_json", "the request needs a JSON body")
    return parse_json(raw)


def _validate(model: type[Body], data: object) -> Body:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _describe(exc)) from None


def parse_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as ``model``, or a 400/422 ApiError that says what is wrong."""
    return _validate(model, _load_json(request))


def parse_usage(request: Request) -> list[UsageIn]:
    """One usage event, or a batch: ``{"events": [...]}``."""
    data = _load_json(request)
    if isinstance(data, dict) and "events" in data:
        return _validate(UsageBatch, data).events
    return [_validate(UsageIn, data)]


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """``raw`` as an int in [low, high], or ApiError 400 ``bad_query`` (every int parameter)."""
    # ASCII digits only: int() also takes "²"-like digits, "1_000" and 4,300-digit numbers.
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > MAX_DIGITS:
        raise ApiError(400, "bad_query", f"{name} must be a whole number from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(400, "bad_query", f"{name} must be between {low} and {high}")
    return value


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as an int in [low, high]; ``default`` when absent."""
    raw = request.args.get(name)
    return default if raw is None else whole_number(raw, name, low, high)


def row_id(raw: str) -> int:
    """The cast of every ``<x:int>`` path parameter: a row id, or ValueError (no route
    matches, so a 404) for a number no row can have (negative, or past the column, which
    would overflow the database driver)."""
    try:
        return whole_number(raw, "id", 0, MAX_ROW_ID)
    except ApiError as exc:
        raise ValueError(exc.message) from None


# How OpenAPI documents those parameters (sanic-ext cannot read a custom cast).
ROW_ID_SCHEMA = openapi.Integer(minimum=0, maximum=MAX_ROW_ID)


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in choices:
        raise ApiError(400, "bad_query", f"{name} must be one of {', '.join(choices)}")
    return raw


class TokenLogin(StrictBody):
    token: str = Field(min_length=1, max_length=512)


class AccessTokenCreate(StrictBody):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "member", "admin", "owner"] | None = None
    # Always a number of days: no null, no "never" over the API (see docs/authentication.md).
    expires_in_days: int = Field(
        default=DEFAULT_LIFETIME_DAYS, strict=True, ge=1, le=MAX_LIFETIME_DAYS
    )


class UserCreate(StrictBody):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    role: Literal["viewer", "member", "admin", "owner"] = "member"


class UserPatch(StrictBody):
    role: Literal["viewer", "member", "admin", "owner"]
