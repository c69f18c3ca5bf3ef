from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orc', '0004_task_runs')]

    initial = False

    operations = [
        ops.AddField(
            model_name='AccessToken',
            name='minted_with',
            field=fields.CharField(null=True, max_length=80),
        ),
    ]
