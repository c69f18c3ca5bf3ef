"""Task weights, statuses and actions are declared once (orc/tasks/vocabulary.py)."""

from __future__ import annotations

from typing import get_args

from orc.api.schemas import TaskPatch, Weight
from orc.tasks.vocabulary import ACTIONS, PATCHABLE_STATUSES, STATUSES, WEIGHTS, vocabulary_json


def test_the_request_schemas_accept_exactly_the_vocabulary():
    assert get_args(Weight) == WEIGHTS
    patchable = get_args(get_args(TaskPatch.model_fields["status"].annotation)[0])
    assert set(patchable) == set(PATCHABLE_STATUSES)


def test_every_action_leads_between_known_statuses():
    for starts, target in ACTIONS.values():
        assert set(starts) <= set(STATUSES) and target in STATUSES


def test_clients_get_the_vocabulary_as_json():
    served = vocabulary_json()
    assert served["weights"] == list(WEIGHTS) and served["default_weight"] in WEIGHTS
    assert served["statuses"] == list(STATUSES)
    assert served["actions"]["run"] == {"from": list(ACTIONS["run"][0]), "to": "queued"}
