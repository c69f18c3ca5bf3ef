"""Stand-ins for the third-party images the production and team compose files name.

No registry is reachable here, so ``caddy:2-alpine``, ``postgres:16-alpine`` and
``prodrigestivill/postgres-backup-local:16`` are built locally from Debian's packages, on the
stand-in of the Dockerfile's base (tests/docker_support.py: debootstrap trixie), and tagged as the
files name them. Each one does what our compose files rely on and nothing more:

- caddy: Debian's ``caddy`` (2.6 in trixie; the official image has a newer 2.x). The official
  image's ``XDG_DATA_HOME=/data`` and ``XDG_CONFIG_HOME=/config`` (certificates and Caddy's local
  CA land in the ``caddy_data`` volume) and its command, ``caddy run --config
  /etc/caddy/Caddyfile --adapter caddyfile``, as root.
- postgres: Debian's PostgreSQL **17**; trixie has no 16 (Debian ships one major version per
  release, bookworm 15, trixie 17; 16 is only in PostgreSQL's own apt repository). What changes:
  the server's version; orc's image has ``pg_dump`` 17, which dumps 16 and 17 alike, and speaks
  the same protocol to both, so orc's own backups and queries are the same path. What is kept
  from the official entry point: on an empty ``/var/lib/postgresql/data`` it runs ``initdb``
  with ``POSTGRES_USER`` as superuser and ``POSTGRES_PASSWORD`` as its password, creates
  ``POSTGRES_DB``, and allows TCP connections only with a password (``scram-sha-256``); the
  server runs as the non-root ``postgres`` user; ``pg_isready`` answers on the default socket;
  ``docker stop`` is a fast shutdown (SIGINT), as in the official image.
- the backup image: ``FROM`` the postgres stand-in as the real one is ``FROM postgres:16``. Its
  command is the real one's, ``go-cron -s "$SCHEDULE" -p "$HEALTHCHECK_PORT" -- /backup.sh``;
  ``go-cron`` is a small Python scheduler here (cron expressions and ``@daily`` through Debian's
  python3-croniter, an HTTP health answer on the port), and ``/backup.sh`` writes
  ``/backups/last/DB-YYYYmmdd-HHMMSS.sql.gz`` with ``pg_dump`` and hard links it into
  ``daily/``, ``weekly/`` and ``monthly/`` under the real image's names, keeping
  ``BACKUP_KEEP_DAYS/WEEKS/MONTHS``. ``docker exec orc-backup /backup.sh`` is the manual backup.

The three are built once and cached like the base: a ``docker save`` tarball in the test cache,
keyed by this module's recipes and the base's key, and a label on each image so a run whose
engine still has them does nothing at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docker_support import Dockerd, _flock, base_image_tag, base_rootfs, cache_dir

CADDY = "caddy:2-alpine"
POSTGRES = "postgres:16-alpine"
BACKUP = "prodrigestivill/postgres-backup-local:16"
LABEL = "orc.test.standin"
APT = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
    " --no-install-recommends {packages} >/dev/null && rm -rf /var/lib/apt/lists/*"
)

CADDY_DOCKERFILE = f"""FROM {{base}}
RUN {APT.format(packages="caddy")} \\
    && mkdir -p /config/caddy /data/caddy /etc/caddy /srv
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
EXPOSE 80 443 443/udp 2019
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
"""

# No main cluster from the package: the entry point makes the one in PGDATA.
POSTGRES_DOCKERFILE = f"""FROM {{base}}
RUN mkdir -p /etc/postgresql-common/createcluster.d \\
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/standin.conf \\
    && {APT.format(packages="postgresql")} \\
    && ln -s /usr/lib/postgresql/*/bin/* /usr/local/bin/ \\
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \\
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
COPY docker-entrypoint.sh /usr/local/bin/
ENV PGDATA=/var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
"""

POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# Stand-in for the official postgres entry point: first start initialises PGDATA, then the
# server runs as postgres.
set -eu
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?the postgres image needs POSTGRES_PASSWORD}"
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE :\"db\"" | psql -v ON_ERROR_STOP=1 -v db="$db" -U "$user" -d postgres
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"
"""

BACKUP_DOCKERFILE = f"""FROM {POSTGRES}
RUN {APT.format(packages="python3-croniter curl")}
ENV POSTGRES_DB="**None**" POSTGRES_HOST="**None**" POSTGRES_PORT=5432 \\
    POSTGRES_USER="**None**" POSTGRES_PASSWORD="**None**" POSTGRES_EXTRA_OPTS="-Z6" \\
    SCHEDULE="@daily" BACKUP_DIR="/backups" BACKUP_SUFFIX=".sql.gz" \\
    BACKUP_KEEP_DAYS=7 BACKUP_KEEP_WEEKS=4 BACKUP_KEEP_MONTHS=6 HEALTHCHECK_PORT=8080
COPY go-cron /usr/local/bin/go-cron
COPY backup.sh /backup.sh
VOLUME /backups
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["exec /usr/local/bin/go-cron -s \\"$SCHEDULE\\" -p \\"$HEALTHCHECK_PORT\\" -- /backup.sh"]
HEALTHCHECK --interval=5m --timeout=3s CMD curl -f "http://localhost:$HEALTHCHECK_PORT/" || exit 1
"""

GO_CRON = r'''#!/usr/bin/python3
"""go-cron -s SCHEDULE -p PORT -- COMMAND...: run COMMAND on the cron SCHEDULE; health on PORT."""
import argparse
import http.server
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime

from croniter import croniter

parser = argparse.ArgumentParser()
parser.add_argument("-s", dest="schedule", required=True)
parser.add_argument("-p", dest="port", type=int, default=8080)
parser.add_argument("command", nargs="+")
args = parser.parse_args()
for stop in (signal.SIGINT, signal.SIGTERM):  # the image's STOPSIGNAL is postgres's SIGINT
    signal.signal(stop, lambda *_: sys.exit(0))


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK\n")


server = http.server.ThreadingHTTPServer(("", args.port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"new cron: {args.schedule}", flush=True)
times = croniter(args.schedule, datetime.now())
while True:
    due = times.get_next(float)
    time.sleep(max(0.0, due - time.time()))
    subprocess.run(args.command, check=False)
'''

BACKUP_SH = r"""#!/bin/sh
# Stand-in for postgres-backup-local's backup.sh: one gzip'd plain dump per database, hard
# linked under the real image's names, and the same retention.
set -eu
for var in POSTGRES_DB POSTGRES_HOST POSTGRES_USER POSTGRES_PASSWORD; do
  eval "value=\${$var}"
  if [ "$value" = "**None**" ]; then
    echo "You need to set the $var environment variable."
    exit 1
  fi
done
export PGUSER="$POSTGRES_USER" PGPASSWORD="$POSTGRES_PASSWORD"
mkdir -p "$BACKUP_DIR/last" "$BACKUP_DIR/daily" "$BACKUP_DIR/weekly" "$BACKUP_DIR/monthly"
for db in $(echo "$POSTGRES_DB" | tr , ' '); do
  last="$BACKUP_DIR/last/$db-$(date +%Y%m%d-%H%M%S)$BACKUP_SUFFIX"
  echo "Creating dump of $db database from $POSTGRES_HOST..."
  # shellcheck disable=SC2086
  pg_dump -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -d "$db" -f "$last" $POSTGRES_EXTRA_OPTS
  ln -sf "$(basename "$last")" "$BACKUP_DIR/last/$db-latest$BACKUP_SUFFIX"
  ln -f "$last" "$BACKUP_DIR/daily/$db-$(date +%Y%m%d)$BACKUP_SUFFIX"
  ln -f "$last" "$BACKUP_DIR/weekly/$db-$(date +%G%V)$BACKUP_SUFFIX"
  ln -f "$last" "$BACKUP_DIR/monthly/$db-$(date +%Y%m)$BACKUP_SUFFIX"
  find "$BACKUP_DIR/last" -maxdepth 1 -mmin +1440 -name "$db-*" -exec rm -f {} +
  find "$BACKUP_DIR/daily" -maxdepth 1 -mtime +"$BACKUP_KEEP_DAYS" -name "$db-*" -exec rm -f {} +
  find "$BACKUP_DIR/weekly" -maxdepth 1 -mtime +$((BACKUP_KEEP_WEEKS * 7 + 1)) -name "$db-*" \
    -exec rm -f {} +
  find "$BACKUP_DIR/monthly" -maxdepth 1 -mtime +$((BACKUP_KEEP_MONTHS * 31 + 1)) \
    -name "$db-*" -exec rm -f {} +
done
echo "SQL backup created successfully"
"""


@dataclass(frozen=True)
class Recipe:
    """One stand-in: its tag, its Dockerfile and the files next to it (name -> text, mode)."""

    tag: str
    dockerfile: str
    files: tuple[tuple[str, str, int], ...] = ()


RECIPES = (
    Recipe(CADDY, CADDY_DOCKERFILE),
    Recipe(POSTGRES, POSTGRES_DOCKERFILE, (("docker-entrypoint.sh", POSTGRES_ENTRYPOINT, 0o755),)),
    Recipe(
        BACKUP,
        BACKUP_DOCKERFILE,
        (("go-cron", GO_CRON, 0o755), ("backup.sh", BACKUP_SH, 0o755)),
    ),
)


def recipes_key(base_tarball: Path) -> str:
    """Changes whenever a stand-in would come out differently (its recipe or the base)."""
    digest = hashlib.sha256(base_tarball.name.encode())
    for recipe in RECIPES:
        digest.update(recipe.tag.encode() + recipe.dockerfile.encode())
        for name, text, mode in recipe.files:
            digest.update(f"{name} {mode:o}".encode() + text.encode())
    return digest.hexdigest()[:16]


def _label(dockerd: Dockerd, tag: str) -> str:
    template = '{{index .Config.Labels "' + LABEL + '"}}'
    found = dockerd.docker("image", "inspect", "-f", template, tag, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def _build(dockerd: Dockerd, recipe: Recipe, key: str) -> None:
    with tempfile.TemporaryDirectory() as context:
        root = Path(context)
        dockerfile = recipe.dockerfile.replace("{base}", base_image_tag())
        (root / "Dockerfile").write_text(dockerfile + f'LABEL {LABEL}="{key}"\n')
        for name, text, mode in recipe.files:
            (root / name).write_text(text)
            (root / name).chmod(mode)
        dockerd.docker("build", "--progress=plain", "-t", recipe.tag, str(root), timeout=900)


def ensure_standins(dockerd: Dockerd) -> dict[str, float]:
    """The three stand-ins under their tags; what it took, in seconds, by step.

    Needs the base stand-in imported under its tag (the ``images`` fixture does that). One
    worker at a time (the compose tests and the run crash test need them, in groups of their
    own): a second waits and finds them in the engine.
    """
    key = recipes_key(base_rootfs())
    cache = cache_dir()
    with _flock(cache / "standins.lock", fcntl.LOCK_EX, 1800, "another worker makes the stand-ins"):
        return _ensure(dockerd, key, cache)


def _ensure(dockerd: Dockerd, key: str, cache: Path) -> dict[str, float]:
    if all(_label(dockerd, recipe.tag) == key for recipe in RECIPES):
        return {"stand-ins (already in the engine)": 0.0}
    tarball = cache / f"standins-{key}.tar"
    started = time.monotonic()
    if tarball.exists():
        dockerd.docker("load", "-q", "-i", str(tarball))
        return {"stand-ins load (cached tarball)": round(time.monotonic() - started, 1)}
    for recipe in RECIPES:
        _build(dockerd, recipe, key)
    built = round(time.monotonic() - started, 1)
    partial = tarball.with_suffix(".partial")
    dockerd.docker("save", "-o", str(partial), *(recipe.tag for recipe in RECIPES))
    partial.rename(tarball)
    for stale in cache.glob("standins-*.tar"):
        if stale != tarball:
            stale.unlink()
    return {"stand-ins build (first run)": built}
