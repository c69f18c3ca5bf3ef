from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('orc', '0003_auth')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Project',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=100)),
                ('path', fields.CharField(unique=True, max_length=1024)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'project', 'app': 'orc', 'pk_attr': 'id', 'table_description': "A git repository on the server's disk that tasks work on."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Run',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('task', fields.ForeignKeyField('orc.Task', source_field='task_id', db_constraint=True, to_field='number', related_name='runs', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharField(db_index=True, max_length=16)),
                ('requested_by', fields.CharField(default='', max_length=255)),
                ('queued_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('lease_owner', fields.CharField(null=True, max_length=128)),
                ('lease_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('phase', fields.CharField(null=True, max_length=64)),
                ('iteration', fields.IntField(default=0)),
                ('session_id', fields.CharField(null=True, max_length=128)),
                ('review_rounds', fields.IntField(default=0)),
                ('cost_usd', fields.FloatField(default=0)),
                ('control', fields.CharField(null=True, max_length=16)),
                ('note', fields.TextField(null=True, unique=False)),
                ('reason', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'run', 'app': 'orc', 'pk_attr': 'id', 'table_description': 'One execution of a task by the job worker, claimed with a lease that its worker renews.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TranscriptEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('task_number', fields.IntField()),
                ('run', fields.ForeignKeyField('orc.Run', source_field='run_id', db_constraint=True, to_field='id', related_name='transcript', on_delete=OnDelete.CASCADE)),
                ('phase', fields.CharField(max_length=64)),
                ('iteration', fields.IntField()),
                ('kind', fields.CharField(max_length=32)),
                ('content', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'transcript_entry', 'app': 'orc', 'indexes': [Index(fields=['task_number', 'id'])], 'pk_attr': 'id', 'table_description': 'One agent message of a run (text, a tool call, a tool result, the result), redacted.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Task',
            name='base_commit',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='Task',
            name='base_ref',
            field=fields.CharField(null=True, max_length=255),
        ),
        ops.AddField(
            model_name='Task',
            name='budget_usd',
            field=fields.FloatField(null=True),
        ),
        ops.AddField(
            model_name='Task',
            name='project',
            field=fields.ForeignKeyField('orc.Project', source_field='project_id', null=True, db_constraint=True, to_field='id', related_name='tasks', on_delete=OnDelete.SET_NULL),
        ),
        ops.AddField(
            model_name='Task',
            name='reason',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='TaskPhase',
            name='artifact',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='TaskPhase',
            name='commit',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='TaskPhase',
            name='summary',
            field=fields.TextField(null=True, unique=False),
        ),
    ]
