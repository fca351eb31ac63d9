"""How the API words an error's fix (server/fixes.py): as the request that takes it, never a CLI command."""

from __future__ import annotations

import json

from modelbuilder.cli.fixes import command
from modelbuilder.errors import ACTIONS, HOST_ACTIONS, NotFound, fix_of, step
from modelbuilder.sdk.client import RemoteError
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


def test_a_client_words_the_server_s_fix_itself_except_a_step_of_the_server_s_host() -> None:
    assert set(ON_THE_HOST) == HOST_ACTIONS  # the API's words for them are what a client shows
    error = NotFound("Compute 'gpu-1' does not exist in workspace 'team'.",
                     "create it ({create}) or list them ({list}).",
                     {"create": step("create_compute", workspace="team", compute="gpu-1"),
                      "list": step("list_computes", workspace="team")})
    body = error.to_dict(request)
    hint, steps = fix_of(json.loads(json.dumps(body["fix"])))  # as it crossed the wire
    again = RemoteError(body["code"], 404, body["message"], hint, steps)
    assert again.hint_in(command) == error.hint_in(command)
    assert "modelbuilder compute create gpu-1" in again.hint_in(command)
    assert again.hint == "create it or list them."  # plain, as the SDK shows it

    host = NotFound("The store is old.", "upgrade it ({up}).", {"up": step("upgrade_store")})
    assert fix_of(host.to_dict(request)["fix"]) is None  # the server's words stand: it is run on its host
    assert "fix" not in NotFound("No such thing.", "look again.").to_dict(request)  # no step, no fix
    for broken in (None, {}, {"hint": "do it ({x}).", "steps": {}}, {"hint": "x", "steps": {"a": {"action": "nope",
                                                                                                "args": {}}}}):
        assert fix_of(broken) is None
