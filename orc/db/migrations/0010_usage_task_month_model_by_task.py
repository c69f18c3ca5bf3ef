"""usage_task_month_model indexed by task_number: the task list reads each listed task's folded
tokens by it."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('orc', '0009_usage_task_month_model')]

    initial = False

    operations = [
        ops.AddIndex(
            model_name='UsageTaskMonthModel',
            index=Index(fields=['task_number']),
        ),
    ]
