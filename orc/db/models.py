"""Database models of the foundation: worker liveness and server state."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


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
    """Small key/value facts about this installation (e.g. when it was first set up)."""

    key = fields.CharField(max_length=128, primary_key=True)
    value = fields.TextField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "server_state"
