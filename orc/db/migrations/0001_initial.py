from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="ServerState",
            fields=[
                (
                    "key",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=128),
                ),
                ("value", fields.TextField(unique=False)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "server_state",
                "app": "orc",
                "pk_attr": "key",
                "table_description": "Small key/value facts about this installation (e.g. when it was first set up).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="WorkerHeartbeat",
            fields=[
                (
                    "worker_id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=255),
                ),
                ("hostname", fields.CharField(max_length=255)),
                ("pid", fields.IntField()),
                ("version", fields.CharField(max_length=64)),
                ("started_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                (
                    "beat_at",
                    fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "worker_heartbeat",
                "app": "orc",
                "pk_attr": "worker_id",
                "table_description": "The last time a job worker proved it runs jobs (written by the heartbeat job).",
            },
            bases=["Model"],
        ),
    ]
