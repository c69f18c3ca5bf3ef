"""Config for Tortoise's own CLI, used by developers to write migrations.

``tortoise -c orc.db.tortoise_cli.TORTOISE_ORM makemigrations`` (see docs/development.md).
"""

import os

from orc.db.url import DatabaseUrl

TORTOISE_ORM = DatabaseUrl(
    os.environ.get("DATABASE_URL", "sqlite:///tmp/orc-dev.db")
).tortoise_config()
