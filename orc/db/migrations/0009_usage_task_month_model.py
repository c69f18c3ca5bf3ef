"""usage_task_month_model: tokens per month, task and model (filled by the first fold after it)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orc', '0008_task_count')]

    initial = False

    operations = [
        ops.CreateModel(
            name='UsageTaskMonthModel',
            fields=[
                ('events', fields.BigIntField(default=0)),
                ('input_tokens', fields.BigIntField(default=0)),
                ('output_tokens', fields.BigIntField(default=0)),
                ('cache_read_tokens', fields.BigIntField(default=0)),
                ('cache_write_tokens', fields.BigIntField(default=0)),
                ('reported_cost_usd', fields.FloatField(default=0, db_default=0)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('month', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('task_number', fields.IntField()),
                ('model', fields.CharField(max_length=128)),
            ],
            options={'table': 'usage_task_month_model', 'app': 'orc', 'unique_together': (('month', 'task_number', 'model'),), 'pk_attr': 'id', 'table_description': 'Tokens per month, task and model, kept by the aggregation job for the top tasks\' figures.'},
            bases=['UsageCounts'],
        ),
    ]
