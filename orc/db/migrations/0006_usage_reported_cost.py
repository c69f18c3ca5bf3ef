from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orc', '0005_access_token_minted_with')]

    initial = False

    operations = [
        ops.AddField(
            model_name='UsageEvent',
            name='reported_cost_usd',
            field=fields.FloatField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='UsageRollup',
            name='reported_cost_usd',
            field=fields.FloatField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='UsageTotal',
            name='reported_cost_usd',
            field=fields.FloatField(default=0, db_default=0),
        ),
    ]
