from __future__ import annotations

import subprocess
import sys

import pytest

from modelbuilder.core import entities as e


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [
        ("Queued", "Preparing"),
        ("Preparing", "Running"),
        ("Running", "Finalizing"),
        ("Finalizing", "Completed"),
        ("Running", "Preempted"),
        ("Preempted", "Queued"),
        ("Running", "Queued"),
        ("Queued", "Canceled"),
        ("Finalizing", "Failed"),
        ("Preempted", "Canceled"),
    ],
)
def test_allowed_transitions(from_status: str, to_status: str) -> None:
    assert e.can_transition(from_status, to_status)


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [
        ("Queued", "Running"),  # must be claimed (Preparing) first
        ("Queued", "Preempted"),  # nothing to interrupt
        ("Running", "Completed"),  # results are written in Finalizing
        ("Preparing", "Finalizing"),
        ("Completed", "Queued"),
        ("Failed", "Queued"),
        ("Canceled", "Running"),
        ("Preempted", "Running"),  # back through the queue, to be claimed again
        ("Running", "Running"),
    ],
)
def test_refused_transitions(from_status: str, to_status: str) -> None:
    assert not e.can_transition(from_status, to_status)


def test_every_non_terminal_status_can_fail_or_be_canceled() -> None:
    for status in e.ACTIVE:
        assert e.can_transition(status, e.FAILED)
        assert e.can_transition(status, e.CANCELED)
    for status in e.TERMINAL:
        assert not e.TRANSITIONS[status]


def test_run_ids_are_short_unguessable_and_match_the_pattern() -> None:
    ids = {e.new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(e.RUN_ID.fullmatch(run_id) for run_id in ids)
    assert all(len(run_id) == 16 for run_id in ids)


def test_utcnow_is_aware() -> None:
    assert e.utcnow().utcoffset() is not None


def test_entities_import_without_the_database_layer() -> None:
    probe = "import sys, modelbuilder.core.entities; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_package_re_exports_its_services() -> None:
    import modelbuilder.core as core

    for name in core.__all__:
        assert getattr(core, name) is not None
    with pytest.raises(AttributeError):
        _ = core.Nope  # type: ignore[attr-defined]
