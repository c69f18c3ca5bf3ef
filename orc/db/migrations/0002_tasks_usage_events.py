from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("orc", "0001_initial")]

    initial = False

    operations = [
        ops.CreateModel(
            name="Event",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("event_type", fields.CharField(max_length=32)),
                ("task_id", fields.CharField(null=True, db_index=True, max_length=32)),
                (
                    "data",
                    fields.JSONField(
                        default=dict,
                        encoder=functools.partial(dumps, separators=(",", ":")),
                        decoder=loads,
                    ),
                ),
                (
                    "created_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True),
                ),
            ],
            options={
                "table": "event",
                "app": "orc",
                "pk_attr": "id",
                "table_description": "The outbox: one row per change, written in the same transaction, tailed by every API.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Task",
            fields=[
                (
                    "number",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("title", fields.CharField(max_length=200)),
                ("description", fields.TextField(default="", unique=False)),
                ("weight", fields.CharField(db_index=True, max_length=16)),
                ("status", fields.CharField(db_index=True, max_length=16)),
                ("current_phase", fields.CharField(null=True, max_length=64)),
                ("created_by", fields.CharField(default="", max_length=255)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "updated_at",
                    fields.DatetimeField(db_index=True, auto_now=True, auto_now_add=False),
                ),
            ],
            options={
                "table": "task",
                "app": "orc",
                "pk_attr": "number",
                "table_description": "A unit of work orc runs. Its public id is ``TASK-001``, derived from ``number``.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="TaskPhase",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "task",
                    fields.ForeignKeyField(
                        "orc.Task",
                        source_field="task_id",
                        db_constraint=True,
                        to_field="number",
                        related_name="phases",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("name", fields.CharField(max_length=64)),
                ("status", fields.CharField(max_length=16)),
                ("iterations", fields.IntField(default=0)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "task_phase",
                "app": "orc",
                "unique_together": (("task", "name"),),
                "pk_attr": "id",
                "table_description": "One phase of a task (plan, implement, review, …) and how often it ran.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageEvent",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("task_number", fields.IntField(db_index=True)),
                ("phase", fields.CharField(default="", max_length=64)),
                ("model", fields.CharField(max_length=128)),
                ("input_tokens", fields.BigIntField(default=0)),
                ("output_tokens", fields.BigIntField(default=0)),
                ("cache_read_tokens", fields.BigIntField(default=0)),
                ("cache_write_tokens", fields.BigIntField(default=0)),
                (
                    "occurred_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "usage_event",
                "app": "orc",
                "pk_attr": "id",
                "table_description": "Tokens of one model call. Append-only, kept when its task is deleted: the spend happened.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageRollup",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("hour", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ("model", fields.CharField(max_length=128)),
                ("task_number", fields.IntField()),
                ("events", fields.BigIntField(default=0)),
                ("input_tokens", fields.BigIntField(default=0)),
                ("output_tokens", fields.BigIntField(default=0)),
                ("cache_read_tokens", fields.BigIntField(default=0)),
                ("cache_write_tokens", fields.BigIntField(default=0)),
            ],
            options={
                "table": "usage_rollup",
                "app": "orc",
                "unique_together": (("hour", "model", "task_number"),),
                "pk_attr": "id",
                "table_description": "Tokens per hour, model and task, folded from usage events by the aggregation job.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageTotal",
            fields=[
                (
                    "model",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=128),
                ),
                ("events", fields.BigIntField(default=0)),
                ("input_tokens", fields.BigIntField(default=0)),
                ("output_tokens", fields.BigIntField(default=0)),
                ("cache_read_tokens", fields.BigIntField(default=0)),
                ("cache_write_tokens", fields.BigIntField(default=0)),
            ],
            options={
                "table": "usage_total",
                "app": "orc",
                "pk_attr": "model",
                "table_description": "All-time tokens per model, kept by the aggregation job so a scrape reads a few rows.",
            },
            bases=["Model"],
        ),
    ]
