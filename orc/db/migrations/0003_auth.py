from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('orc', '0002_tasks_usage_events')]

    initial = False

    operations = [
        ops.CreateModel(
            name='OidcLogin',
            fields=[
                ('state_hash', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('nonce', fields.CharField(max_length=128)),
                ('code_verifier', fields.CharField(max_length=128)),
                ('return_to', fields.CharField(default='/', max_length=512)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'oidc_login', 'app': 'orc', 'pk_attr': 'state_hash', 'table_description': 'A sign-in in progress: its state (hashed), nonce and PKCE verifier, used once.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=320)),
                ('subject', fields.CharField(null=True, unique=True, max_length=255)),
                ('name', fields.CharField(default='', max_length=200)),
                ('role', fields.CharField(max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'orc_user', 'app': 'orc', 'pk_attr': 'id', 'table_description': 'A person who signs in with OIDC, and the role that decides what they may do.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AccessToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=100)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('orc.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='tokens', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharField(max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'access_token', 'app': 'orc', 'pk_attr': 'id', 'table_description': 'A personal access token (orc_pat_...). Only its SHA-256 is stored.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuthSession',
            fields=[
                ('id_hash', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('user', fields.ForeignKeyField('orc.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('subject', fields.CharField(max_length=320)),
                ('role', fields.CharField(max_length=16)),
                ('credential', fields.CharField(null=True, max_length=80)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'auth_session', 'app': 'orc', 'pk_attr': 'id_hash', 'table_description': 'A browser session. The cookie carries its id, signed, and this row can revoke it.'},
            bases=['Model'],
        ),
    ]
