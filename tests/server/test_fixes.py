"""How the API words an error's fix (server/fixes.py): as the request that takes it, never a CLI command."""

from __future__ import annotations

from modelbuilder.errors import ACTIONS, NotFound, step
from modelbuilder.server.fixes import ON_THE_HOST, REQUESTS, UNWORDED, request


def test_every_step_has_the_api_s_words_or_none_on_purpose() -> None:
    assert set(REQUESTS) | set(ON_THE_HOST) | UNWORDED | {"delete_with_force"} == ACTIONS
    every = {"workspace": "team", "compute": "gpu-1", "run": "run-0123456789ab", "model": "pets",
             "data": "pets"}
    for action in ACTIONS - UNWORDED:
        worded = request(step(action, **every))
        assert worded, action
        assert "{" not in worded, (action, worded)
        if action not in ON_THE_HOST:  # steps an API client takes are requests, not commands
            assert worded.split()[0] in ("GET", "POST", "DELETE"), (action, worded)


def test_a_fix_names_the_request() -> None:
    error = NotFound("Compute 'gpu-1' does not exist in workspace 'team'.", "create it ({create}).",
                     {"create": step("create_compute", workspace="team", compute="gpu-1")})
    assert error.to_dict(request)["hint"] == "create it (POST /api/v1/workspaces/team/computes)."
    forced = request(step("delete_with_force", workspace="team", compute="gpu-1"))
    assert forced == "DELETE /api/v1/workspaces/team/computes/gpu-1?force=true"
    assert request(step("use_workspace", workspace="team")) is None  # a request names its workspace itself
