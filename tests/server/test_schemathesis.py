"""Property-based tests of every API operation in /openapi.json (schemathesis, in process): no 5xx, and
every error in the `{code, message, hint}` shape.

Bounded to 25 examples per operation. Half of the generated run ids are swapped for a real completed
run's, so the artifact, bundle, metrics, logs and predict routes are exercised past their 404s.
The app is made at import (schemathesis reads its schema when the tests are collected), over a
home of its own that is removed at the end of the module.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from modelbuilder.config import Settings
from modelbuilder.server.api import create_app
from tests.completed import TrainedRun, make_completed_run

HOME = Path(tempfile.mkdtemp(prefix="modelbuilder-fuzz-"))
APP = create_app(Settings(home=HOME, offline=True), start_agents=False,
                 trusted_hosts=("testserver",))  # the Host schemathesis' ASGI client sends
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
SEEN: dict[str, set[int]] = {}  # "METHOD /path/{template}" -> the statuses it answered


@pytest.fixture(scope="module", autouse=True)
def _remove_home() -> Iterator[None]:
    yield
    APP.state.server.close()
    shutil.rmtree(HOME, ignore_errors=True)


@pytest.fixture(scope="module")
def real_run(trained: TrainedRun) -> str:
    return make_completed_run(APP.state.server.services, trained)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_errors(case: schemathesis.Case, real_run: str) -> None:
    params = case.path_parameters or {}
    if "run_id" in params and zlib.crc32(str(params["run_id"]).encode()) % 2 == 0:
        params["run_id"] = real_run
    response = case.call()
    SEEN.setdefault(f"{case.method.upper()} {case.path}", set()).add(response.status_code)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])
    content_type = response.headers.get("content-type") or [""]
    if response.status_code >= 400 and content_type[0].startswith("application/json"):
        assert {"code", "message", "hint"} <= set(response.json()), response.text[:500]


def test_the_fuzzing_reached_past_the_404s() -> None:
    """The swap above works: routes of the real run answered with success, not only with errors."""
    for operation in ("GET /api/v1/runs/{run_id}/bundle", "GET /api/v1/runs/{run_id}/metrics",
                      "GET /api/v1/runs/{run_id}/artifacts", "GET /api/v1/runs/{run_id}/logs"):
        assert 200 in SEEN.get(operation, set()), (operation, SEEN.get(operation))
    assert 409 in SEEN.get("POST /api/v1/runs/{run_id}/cancel", set())  # the real run has ended
    assert len(SEEN) >= 25
