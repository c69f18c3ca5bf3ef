from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('orc', '0006_usage_reported_cost')]

    initial = False

    operations = [
        ops.CreateModel(
            name='UsageDay',
            fields=[
                ('events', fields.BigIntField(default=0)),
                ('input_tokens', fields.BigIntField(default=0)),
                ('output_tokens', fields.BigIntField(default=0)),
                ('cache_read_tokens', fields.BigIntField(default=0)),
                ('cache_write_tokens', fields.BigIntField(default=0)),
                ('reported_cost_usd', fields.FloatField(default=0, db_default=0)),
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('day', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('model', fields.CharField(max_length=128)),
            ],
            options={'table': 'usage_day', 'app': 'orc', 'unique_together': (('day', 'model'),), 'pk_attr': 'id', 'table_description': 'Tokens per UTC day and model, kept by the aggregation job for the cost reports.'},
            bases=['UsageCounts'],
        ),
        ops.CreateModel(
            name='UsageTaskMonth',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('month', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('task_number', fields.IntField()),
                ('tokens', fields.BigIntField(default=0)),
                ('cost_usd', fields.FloatField(default=0)),
            ],
            options={'table': 'usage_task_month', 'app': 'orc', 'unique_together': (('month', 'task_number'),), 'indexes': [Index(fields=['month', 'cost_usd', 'task_number'])], 'pk_attr': 'id', 'table_description': 'Tokens and cost per month and task, kept by the aggregation job for the top tasks.'},
            bases=['Model'],
        ),
    ]
