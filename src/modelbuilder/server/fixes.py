"""How the API words the steps that fix an error (`errors.Step`): as the request that takes them."""

from __future__ import annotations

from modelbuilder.errors import Step
from modelbuilder.server import API_PREFIX as PREFIX

REQUESTS = {
    "list_workspaces": "GET {prefix}/workspaces",
    "create_workspace": "POST {prefix}/workspaces",
    "list_computes": "GET {prefix}/workspaces/{workspace}/computes",
    "create_compute": "POST {prefix}/workspaces/{workspace}/computes",
    "show_compute": "GET {prefix}/workspaces/{workspace}/computes/{compute}",
    "delete_compute": "DELETE {prefix}/workspaces/{workspace}/computes/{compute}",
    "compute_sizes": "GET {prefix}/sizes",
    "list_experiments": "GET {prefix}/workspaces/{workspace}/experiments",
    "list_runs": "GET {prefix}/runs?workspace=NAME",
    "show_run": "GET {prefix}/runs/{run}",
    "cancel_run": "POST {prefix}/runs/{run}/cancel",
    "follow_run": "GET {prefix}/runs/{run}/events",
    "list_artifacts": "GET {prefix}/runs/{run}/artifacts",
    "list_models": "GET {prefix}/workspaces/{workspace}/models",
    "show_model": "GET {prefix}/workspaces/{workspace}/models/{model}",
    "list_data": "GET {prefix}/workspaces/{workspace}/data",
    "show_data": "GET {prefix}/workspaces/{workspace}/data/{data}",
}
# Steps taken on the server's host, by whoever runs it.
ON_THE_HOST = {
    "upgrade_store": "'modelbuilder db upgrade' on the server's host",
    "choose_home": "on the server's host",
}
# Steps the API has no request for: a request names its workspace itself, regions are the settings', and
# a run's export calibrates on the run's own validation images, and a submission's body requires its data.
UNWORDED = frozenset({"use_workspace", "list_regions", "give_data", "give_validation_data"})


def request(step: Step) -> str | None:
    """The request (or the host's step) that takes `step`; None where the API has none."""
    if step.action in UNWORDED:
        return None
    if step.action in ON_THE_HOST:
        return ON_THE_HOST[step.action]
    if step.action == "delete_with_force":
        where = f"/workspaces/{step.args['workspace']}"
        if "compute" in step.args:
            where += f"/computes/{step.args['compute']}"
        return f"DELETE {PREFIX}{where}?force=true"
    return REQUESTS[step.action].format(prefix=PREFIX, **step.args)
