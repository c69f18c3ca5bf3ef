"""Database models.

A model docstring becomes a table comment in the DDL that Tortoise runs; on SQLite a semicolon
in it splits the statement, so these docstrings have none.

Tortoise looks for ``#:`` field comments by parsing each model's module (``inspect.getsource``,
``ast.parse`` once per class); orc writes none, so that is switched off below for every model,
Tortoise's own migration record included: it cost about 65 ms of the start-up of every process
that imports the models, and ``ast.parse`` is not thread-safe on CPython 3.11
(python/cpython#106905, "AST constructor recursion depth mismatch": hit once in the suite by a
migration running beside another thread).
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise import models as tortoise_models
from tortoise.models import Model


def _no_field_comments(model: type[Model]) -> dict[str, str]:
    return {}


tortoise_models._get_comments = _no_field_comments  # type: ignore[assignment]  # (a function)


class WorkerHeartbeat(Model):
    """The last time a job worker proved it runs jobs (written by the heartbeat job)."""

    worker_id = fields.CharField(max_length=255, primary_key=True)
    hostname = fields.CharField(max_length=255)
    pid = fields.IntField()
    version = fields.CharField(max_length=64)
    started_at = fields.DatetimeField()
    beat_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "worker_heartbeat"


class ServerState(Model):
    """Facts every process must read alike: backup outcomes and the last replication check."""

    key = fields.CharField(max_length=128, primary_key=True)
    value = fields.TextField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "server_state"
        # The table comment migration 0001 applied; changing it would need a migration.
        table_description = (
            "Small key/value facts about this installation (e.g. when it was first set up)."
        )


class Project(Model):
    """A git repository on the server's disk that tasks work on."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    path = fields.CharField(max_length=1024, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "project"


class Task(Model):
    """A unit of work orc runs. Its public id is ``TASK-001``, derived from ``number``."""

    number = fields.IntField(primary_key=True)  # AUTOINCREMENT on SQLite, a sequence on PostgreSQL
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    weight = fields.CharField(max_length=16, db_index=True)
    status = fields.CharField(max_length=16, db_index=True)
    current_phase = fields.CharField(max_length=64, null=True)
    created_by = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True, db_index=True)
    project: fields.ForeignKeyNullableRelation[Project] = fields.ForeignKeyField(
        "orc.Project", related_name="tasks", null=True, on_delete=fields.SET_NULL
    )
    # The branch or commit asked for, and the commit the task's branch started from.
    base_ref = fields.CharField(max_length=255, null=True)
    base_commit = fields.CharField(max_length=64, null=True)
    budget_usd = fields.FloatField(null=True)
    # Why the task is paused, blocked or failed, in words a person can act on.
    reason: str | None = fields.TextField(null=True)

    class Meta:
        table = "task"
        # The task list's filters, each read newest first along its own index (keyset pages).
        indexes = (("status", "number"), ("weight", "number"), ("status", "weight", "number"))


class TaskCount(Model):
    """How many tasks have each status and weight, kept by triggers on task for the list totals."""

    id = fields.IntField(primary_key=True)
    status = fields.CharField(max_length=16)
    weight = fields.CharField(max_length=16)
    # Changed only by the triggers of migration 0008, in the transaction that changes the task.
    tasks = fields.BigIntField(default=0)

    class Meta:
        table = "task_count"
        unique_together = (("status", "weight"),)


class TaskPhase(Model):
    """One phase of a task (plan, implement, review, …) and how often it ran."""

    id = fields.IntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "orc.Task", related_name="phases", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=64)
    status = fields.CharField(max_length=16)
    iterations = fields.IntField(default=0)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    summary: str | None = fields.TextField(null=True)
    # What the phase produced for later phases (the spec, the breakdown, review findings).
    artifact: str | None = fields.TextField(null=True)
    commit = fields.CharField(max_length=64, null=True)

    class Meta:
        table = "task_phase"
        unique_together = (("task", "name"),)


class Run(Model):
    """One execution of a task by the job worker, claimed with a lease that its worker renews."""

    id = fields.IntField(primary_key=True)
    task: fields.ForeignKeyRelation[Task] = fields.ForeignKeyField(
        "orc.Task", related_name="runs", on_delete=fields.CASCADE
    )
    status = fields.CharField(max_length=16, db_index=True)
    requested_by = fields.CharField(max_length=255, default="")
    queued_at = fields.DatetimeField(db_index=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    lease_owner = fields.CharField(max_length=128, null=True)
    lease_expires_at = fields.DatetimeField(null=True)
    phase = fields.CharField(max_length=64, null=True)
    iteration = fields.IntField(default=0)
    session_id = fields.CharField(max_length=128, null=True)
    review_rounds = fields.IntField(default=0)
    cost_usd = fields.FloatField(default=0)
    # A person's request to the running worker (pause or cancel), and the note for a resume.
    control = fields.CharField(max_length=16, null=True)
    note: str | None = fields.TextField(null=True)
    reason: str | None = fields.TextField(null=True)

    class Meta:
        table = "run"


class TranscriptEntry(Model):
    """One agent message of a run (text, a tool call, a tool result, the result), redacted."""

    id = fields.BigIntField(primary_key=True)
    task_number = fields.IntField()
    run: fields.ForeignKeyRelation[Run] = fields.ForeignKeyField(
        "orc.Run", related_name="transcript", on_delete=fields.CASCADE
    )
    phase = fields.CharField(max_length=64)
    iteration = fields.IntField()
    kind = fields.CharField(max_length=32)
    content: Any = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "transcript_entry"
        indexes = (("task_number", "id"),)


class UsageEvent(Model):
    """Tokens of one model call. Append-only, kept when its task is deleted: the spend happened."""

    id = fields.BigIntField(primary_key=True)
    task_number = fields.IntField(db_index=True)
    phase = fields.CharField(max_length=64, default="")
    model = fields.CharField(max_length=128)
    input_tokens = fields.BigIntField(default=0)
    output_tokens = fields.BigIntField(default=0)
    cache_read_tokens = fields.BigIntField(default=0)
    cache_write_tokens = fields.BigIntField(default=0)
    # What the agent said these tokens cost (its own price table); counts only for a model
    # orc's price table does not know.
    reported_cost_usd = fields.FloatField(default=0, db_default=0)
    occurred_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "usage_event"


class UsageCounts(Model):
    """Event and token counters shared by the rollup and the all-time totals."""

    events = fields.BigIntField(default=0)
    input_tokens = fields.BigIntField(default=0)
    output_tokens = fields.BigIntField(default=0)
    cache_read_tokens = fields.BigIntField(default=0)
    cache_write_tokens = fields.BigIntField(default=0)
    reported_cost_usd = fields.FloatField(default=0, db_default=0)

    class Meta:
        abstract = True


class UsageRollup(UsageCounts):
    """Tokens per hour, model and task, folded from usage events by the aggregation job."""

    id = fields.BigIntField(primary_key=True)
    hour = fields.DatetimeField(db_index=True)
    model = fields.CharField(max_length=128)
    task_number = fields.IntField()

    class Meta:
        table = "usage_rollup"
        unique_together = (("hour", "model", "task_number"),)


class UsageDay(UsageCounts):
    """Tokens per UTC day and model, kept by the aggregation job for the cost reports."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DatetimeField()
    model = fields.CharField(max_length=128)

    class Meta:
        table = "usage_day"
        unique_together = (("day", "model"),)


class UsageTotal(UsageCounts):
    """All-time tokens per model, kept by the aggregation job so a scrape reads a few rows."""

    model = fields.CharField(max_length=128, primary_key=True)

    class Meta:
        table = "usage_total"


class UsageTaskMonth(Model):
    """Tokens and cost per month and task, kept by the aggregation job for the top tasks."""

    id = fields.BigIntField(primary_key=True)
    month = fields.DatetimeField()
    task_number = fields.IntField()
    tokens = fields.BigIntField(default=0)
    # At the prices whose fingerprint server_state holds (orc.usage.task_months).
    cost_usd = fields.FloatField(default=0)

    class Meta:
        table = "usage_task_month"
        unique_together = (("month", "task_number"),)
        # The top tasks of a month: the last entries of this index, read backwards.
        indexes = (("month", "cost_usd", "task_number"),)


class UsageTaskMonthModel(UsageCounts):
    """Tokens per month, task and model, kept by the aggregation job for the top tasks' figures."""

    # The cost summary reads the candidates' rows by the unique key (month, task, model), and
    # prices them as it prices events: exact, without reading the candidates' events.

    id = fields.BigIntField(primary_key=True)
    month = fields.DatetimeField()
    task_number = fields.IntField()
    model = fields.CharField(max_length=128)

    class Meta:
        table = "usage_task_month_model"
        unique_together = (("month", "task_number", "model"),)
        # The task list reads each listed task's folded tokens (all months) by it.
        indexes = (("task_number",),)


class Event(Model):
    """The outbox: one row per change, written in the same transaction, tailed by every API."""

    id = fields.BigIntField(primary_key=True)
    event_type = fields.CharField(max_length=32)
    task_id = fields.CharField(max_length=32, null=True, db_index=True)
    data: Any = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "event"


class User(Model):
    """A person who signs in with OIDC, and the role that decides what they may do."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    subject = fields.CharField(max_length=255, null=True, unique=True)
    name = fields.CharField(max_length=200, default="")
    role = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "orc_user"


class AuthSession(Model):
    """A browser session. The cookie carries its id, signed, and this row can revoke it."""

    id_hash = fields.CharField(max_length=64, primary_key=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "orc.User", related_name="sessions", null=True, on_delete=fields.CASCADE
    )
    subject = fields.CharField(max_length=320)
    role = fields.CharField(max_length=16)
    # The token a browser signed in with ("pat:ID" or "token:FINGERPRINT"), checked on every
    # use: revoking, expiring or rotating that token ends the session too.
    credential = fields.CharField(max_length=80, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "auth_session"


class AccessToken(Model):
    """A personal access token (orc_pat_...). Only its SHA-256 is stored."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    token_hash = fields.CharField(max_length=64, unique=True)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "orc.User", related_name="tokens", null=True, on_delete=fields.CASCADE
    )
    role = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    # Made by a caller holding the server token ("token:FINGERPRINT", as sessions record it):
    # the token works only while ORC_AUTH_TOKEN is still that one.
    minted_with = fields.CharField(max_length=80, null=True)

    class Meta:
        table = "access_token"


class OidcLogin(Model):
    """A sign-in in progress: its state (hashed), nonce and PKCE verifier, used once."""

    state_hash = fields.CharField(max_length=64, primary_key=True)
    nonce = fields.CharField(max_length=128)
    code_verifier = fields.CharField(max_length=128)
    return_to = fields.CharField(max_length=512, default="/")
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "oidc_login"
