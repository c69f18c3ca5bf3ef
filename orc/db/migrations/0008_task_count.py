"""task_count: the task list's totals per status and weight, kept exact by triggers on task.

The triggers change task_count in the statement (and so the transaction) that changes a task,
whichever code or tool writes it: the API, the job worker, a bench seed's INSERT … SELECT.
PostgreSQL: statement-level triggers with transition tables (one upsert per status and weight
a statement touches, in (status, weight) order so that concurrent writers on several replicas
lock the count rows in one order, and never a row-by-row chain of updates of one hot row);
SQLite: row-level triggers (one writer at a time). The backfill runs after the triggers exist,
in the migration's transaction: on PostgreSQL CREATE TRIGGER locks task against writes until
it commits, so no change is counted twice or missed.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

SQLITE = [
    """CREATE TRIGGER task_count_insert AFTER INSERT ON task BEGIN
    INSERT INTO task_count (status, weight, tasks) VALUES (NEW.status, NEW.weight, 1)
    ON CONFLICT (status, weight) DO UPDATE SET tasks = tasks + 1;
END""",
    """CREATE TRIGGER task_count_delete AFTER DELETE ON task BEGIN
    UPDATE task_count SET tasks = tasks - 1 WHERE status = OLD.status AND weight = OLD.weight;
END""",
    """CREATE TRIGGER task_count_update AFTER UPDATE OF status, weight ON task
WHEN OLD.status IS NOT NEW.status OR OLD.weight IS NOT NEW.weight BEGIN
    UPDATE task_count SET tasks = tasks - 1 WHERE status = OLD.status AND weight = OLD.weight;
    INSERT INTO task_count (status, weight, tasks) VALUES (NEW.status, NEW.weight, 1)
    ON CONFLICT (status, weight) DO UPDATE SET tasks = tasks + 1;
END""",
]

# One function for the three triggers: +1 for every new row, -1 for every old one, summed per
# (status, weight); groups whose sum is 0 (an UPDATE of other columns) are not written.
POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION task_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_count AS c (status, weight, tasks)
        SELECT status, weight, COUNT(*) FROM new_rows GROUP BY status, weight
        ORDER BY status, weight
        ON CONFLICT (status, weight) DO UPDATE SET tasks = c.tasks + EXCLUDED.tasks;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_count AS c (status, weight, tasks)
        SELECT status, weight, -COUNT(*) FROM old_rows GROUP BY status, weight
        ORDER BY status, weight
        ON CONFLICT (status, weight) DO UPDATE SET tasks = c.tasks + EXCLUDED.tasks;
    ELSE
        INSERT INTO task_count AS c (status, weight, tasks)
        SELECT status, weight, SUM(delta) FROM (
            SELECT status, weight, 1 AS delta FROM new_rows
            UNION ALL SELECT status, weight, -1 AS delta FROM old_rows
        ) AS changed GROUP BY status, weight HAVING SUM(delta) <> 0
        ORDER BY status, weight
        ON CONFLICT (status, weight) DO UPDATE SET tasks = c.tasks + EXCLUDED.tasks;
    END IF;
    RETURN NULL;
END
$$"""

POSTGRES = [
    POSTGRES_FUNCTION,
    "CREATE TRIGGER task_count_insert AFTER INSERT ON task REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION task_count_apply()",
    "CREATE TRIGGER task_count_delete AFTER DELETE ON task REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION task_count_apply()",
    "CREATE TRIGGER task_count_update AFTER UPDATE ON task "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION task_count_apply()",
]

BACKFILL = (
    "INSERT INTO task_count (status, weight, tasks) "
    "SELECT status, weight, COUNT(*) FROM task GROUP BY status, weight"
)


async def count_tasks(apps: Any, schema_editor: Any) -> None:
    """The triggers, then the counts of the tasks that exist."""
    client = schema_editor.client
    postgres = client.capabilities.dialect == "postgres"
    for statement in [*(POSTGRES if postgres else SQLITE), BACKFILL]:
        await client.execute_script(statement)


async def uncount_tasks(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    for name in ("task_count_insert", "task_count_delete", "task_count_update"):
        on = " ON task" if client.capabilities.dialect == "postgres" else ""
        await client.execute_script(f"DROP TRIGGER IF EXISTS {name}{on}")
    if client.capabilities.dialect == "postgres":
        await client.execute_script("DROP FUNCTION IF EXISTS task_count_apply()")
    await client.execute_script("DELETE FROM task_count")


class Migration(migrations.Migration):
    dependencies = [('orc', '0007_usage_day_and_task_month')]

    initial = False

    operations = [
        ops.CreateModel(
            name='TaskCount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('status', fields.CharField(max_length=16)),
                ('weight', fields.CharField(max_length=16)),
                ('tasks', fields.BigIntField(default=0)),
            ],
            options={'table': 'task_count', 'app': 'orc', 'unique_together': (('status', 'weight'),), 'pk_attr': 'id', 'table_description': 'How many tasks have each status and weight, kept by triggers on task for the list totals.'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['status', 'number']),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['weight', 'number']),
        ),
        ops.AddIndex(
            model_name='Task',
            index=Index(fields=['status', 'weight', 'number']),
        ),
        ops.RunPython(count_tasks, uncount_tasks),
    ]
