#!/bin/sh
# The container's entry point: migrate once, restore the database from the Litestream replica
# when replication is on and the file is missing, then exec supervisord (orc-supervisord).
#
#   docker run IMAGE                      # the service
#   docker run IMAGE token generate       # an orc subcommand (or an option) runs as `orc …`
#   docker run IMAGE orc token generate   # any other command runs as given, nothing else happens
set -eu

# orc's subcommands (tests/test_deploy_entrypoint.py keeps this list equal to `orc --help`'s).
# They win over programs of the same name (diff): run those by path, e.g. /usr/bin/diff.
ORC_COMMANDS=" backup cancel config cost diff fold-usage healthcheck init list log migrate new pause project replication resume run serve show token user worker "

if [ "$#" -gt 0 ]; then
  case "$1" in
    -*) exec orc "$@" ;;
  esac
  case "$ORC_COMMANDS" in
    *" $1 "*) exec orc "$@" ;;
  esac
  exec "$@"
fi

if [ "$(id -u)" = "0" ]; then
  echo "orc: error: refusing to run the service as root; run as uid 1000 (the image's user)" >&2
  exit 2
fi

: "${ORC_HOME:=/home/orc/.orc}"
: "${SUPERVISOR_RUN_DIR:=/tmp}"
: "${SUPERVISOR_CONF:=/etc/supervisord.conf}"
: "${ORC_LITESTREAM_ENABLED:=false}"
: "${ORC_LITESTREAM_CONFIG:=/etc/litestream.yml}"

# supervisord reads these through %(ENV_…)s; normalise the switch to what it parses.
case "$(printf '%s' "$ORC_LITESTREAM_ENABLED" | tr '[:upper:]' '[:lower:]')" in
  1|true|yes|on) ORC_LITESTREAM_ENABLED=true ;;
  0|false|no|off|"") ORC_LITESTREAM_ENABLED=false ;;
  *)
    echo "orc: error: ORC_LITESTREAM_ENABLED=$ORC_LITESTREAM_ENABLED is invalid: not a boolean; use true or false" >&2
    exit 2
    ;;
esac
export ORC_HOME SUPERVISOR_RUN_DIR ORC_LITESTREAM_ENABLED ORC_LITESTREAM_CONFIG

mkdir -p "$ORC_HOME" "$SUPERVISOR_RUN_DIR"
if [ ! -w "$ORC_HOME" ]; then
  echo "orc: error: $ORC_HOME is not writable by uid $(id -u); chown the volume to 1000:1000" >&2
  exit 2
fi

# The SQLite file orc uses: DATABASE_URL's path, else ORC_HOME/orc.db; none for PostgreSQL.
sqlite_path() {
  case "${DATABASE_URL:-}" in
    "") printf '%s\n' "$ORC_HOME/orc.db" ;;
    sqlite://*) url="${DATABASE_URL#sqlite://}"; printf '%s\n' "${url%%\?*}" ;;
    *) printf '\n' ;;
  esac
}

if [ "$ORC_LITESTREAM_ENABLED" = "true" ]; then
  if [ ! -r "$ORC_LITESTREAM_CONFIG" ]; then
    echo "orc: error: ORC_LITESTREAM_ENABLED=true but $ORC_LITESTREAM_CONFIG cannot be read; mount your litestream.yml there or set ORC_LITESTREAM_CONFIG" >&2
    exit 2
  fi
  db="$(sqlite_path)"
  if [ -n "$db" ] && [ ! -e "$db" ]; then
    # The volume lost its database: bring it back from the replica before anything creates an
    # empty one. Exits 0 when there is no replica yet (a first start).
    orc replication restore --if-missing
  fi
fi

# Once, before any program starts (takes a backup first when there is something to migrate).
orc migrate

exec orc-supervisord -c "$SUPERVISOR_CONF"
