"""One error root: every orc error names its HTTP status, code and CLI exit code (orc/errors.py)."""

from __future__ import annotations

import importlib
import json

from orc.api.error_handler import JsonErrorHandler
from orc.errors import EXIT_FAILED, EXIT_USAGE, OrcError
from orc.tasks.lifecycle import TaskNotFound

DOMAIN_MODULES = (
    "orc.config",
    "orc.tasks.lifecycle",
    "orc.backup.exclusive",
    "orc.backup.premigrate",
    "orc.backup.restore",
    "orc.db.schema",
    "orc.replication.litestream",
    "orc.auth.access_tokens",
    "orc.auth.oidc",
    "orc.auth.users",
)


def _all_subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_domain_error_derives_from_orc_error_with_a_status_code_and_exit_code():
    for module in DOMAIN_MODULES:
        importlib.import_module(module)
    errors = _all_subclasses(OrcError)
    names = {error.__name__ for error in errors}
    assert {"ConfigError", "TaskNotFound", "BackupError", "ReplicationError", "OidcError"} <= names
    for error in errors:
        assert isinstance(error.status, int) and 400 <= error.status < 600, error
        assert isinstance(error.code, str) or "code" in error.__init__.__code__.co_varnames, error
        assert error.exit_code in (EXIT_FAILED, EXIT_USAGE), error


def test_the_api_answers_an_orc_error_with_its_status_code_and_message():
    response = JsonErrorHandler().default(None, TaskNotFound("TASK-007"))  # type: ignore[arg-type]
    assert response.status == 404
    assert json.loads(response.body) == {"error": "task_not_found", "message": "no task TASK-007"}


def test_unknown_route_and_wrong_method_answer_json_errors(app_factory, migrated, sqlite_env):
    server = app_factory(sqlite_env)
    missing = server.get("/api/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert missing.json()["message"]

    wrong = server.http.post("/api/health")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
