"""Workspaces and their experiments, as the CLI reads and changes them: create, list, show, delete, the one in
use (`use`, `in_use`), an experiment and the runs of a workspace.

With a `client` (`sdk.client.Client`: a server and no store shared with it) they go through the REST API and
come back as the entities the store gives (`sdk.remote.WorkspacesAPI`), so one renderer shows both; without,
through the store in this process. Either way the workspace in use is remembered in this home's
`context.json` (`core.workspace.WorkspaceContext`), which needs no store.

    from modelbuilder.sdk import workspaces
    workspaces.use(services, "team", client=client)
    name, _ = workspaces.in_use(services, None, client)     # 'team'
"""

from __future__ import annotations

from collections import Counter

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.core.workspace import WorkspaceContext
from modelbuilder.sdk import remote
from modelbuilder.sdk.client import Client

RUN_LIMIT = 10_000  # the most runs of a workspace read to count them (locally)
REMOTE_RUN_LIMIT = 1000  # the most runs GET /runs answers at once


def context(services: Services) -> WorkspaceContext:
    """This home's choice of workspace (read and written without opening the store)."""
    return services.workspaces.context


def current(services: Services) -> str | None:
    """The workspace chosen with `use`, or None."""
    return context(services).current()


def in_use(services: Services, name: str | None = None, client: Client | None = None
           ) -> tuple[str, e.Compute | None]:
    """The workspace a command acts in: `name`, else the one chosen with `use`, else `default`. Locally,
    `default` is made with its local compute the first time it is used (the compute comes back when this
    call made it); a server makes it on its first use there."""
    return services.workspaces.in_use(name, here=client is None)


def create(services: Services, name: str, region: str, resource_group: str, client: Client | None = None
           ) -> e.Workspace:
    if client is None:
        return services.workspaces.create(name, region, resource_group)
    names.workspace_name(name)
    names.resource_group(resource_group)  # the region is the server's to check: its settings list them
    return remote.WorkspacesAPI(client).create(name, region, resource_group)


def list_workspaces(services: Services, client: Client | None = None) -> list[e.Workspace]:
    """Every workspace, by name."""
    return services.workspaces.list() if client is None else remote.WorkspacesAPI(client).workspaces()


def get(services: Services, name: str, client: Client | None = None) -> e.Workspace:
    names.workspace_name(name)
    return services.workspaces.get(name) if client is None else remote.WorkspacesAPI(client).get(name)


def delete(services: Services, name: str, force: bool = False, client: Client | None = None) -> list[str]:
    """Delete the workspace with its experiments, computes, runs and their artifacts; the ids of its runs.
    When it was the workspace in use, none is in use afterwards."""
    names.workspace_name(name)
    if client is not None:
        run_ids = remote.WorkspacesAPI(client).delete(name, force=force)
        context(services).forget(name)
        return run_ids
    run_ids = services.workspaces.delete(name, force=force)
    for run_id in run_ids:
        services.artifacts.delete_run(run_id)
    return run_ids


def use(services: Services, name: str, client: Client | None = None) -> e.Workspace:
    """Make `name` the workspace later commands act in when they name none; it must exist (locally, `default`
    is made on first use)."""
    if client is None:
        return services.workspaces.use_workspace(in_use(services, name)[0])
    workspace = get(services, name, client)  # a missing one: the server's error, and nothing remembered
    context(services).remember(workspace.name)
    return workspace


# --- experiments and runs -------------------------------------------------------------------------------------
def runs(services: Services, workspace: str, experiment: str | None = None, client: Client | None = None
         ) -> list[e.Run]:
    """The workspace's runs (only `experiment`'s), newest first: at most RUN_LIMIT, through a server
    REMOTE_RUN_LIMIT."""
    if client is None:
        return services.runs.list(workspace, experiment=experiment, limit=RUN_LIMIT)
    return remote.RunsAPI(client).list_runs(workspace, experiment, limit=REMOTE_RUN_LIMIT)


def experiments(services: Services, workspace: str, client: Client | None = None) -> list[e.ExperimentSummary]:
    """The workspace's experiments by name, with their number of runs and their newest run's status."""
    if client is not None:
        return remote.WorkspacesAPI(client).experiments(workspace)
    found = services.workspaces.list_experiments(workspace)
    listed = runs(services, workspace)
    counts = Counter(run.experiment_name for run in listed)
    latest: dict[str, str] = {}
    for run in listed:  # newest first
        latest.setdefault(run.experiment_name, run.status)
    return [e.ExperimentSummary(x, counts[x.name], latest.get(x.name)) for x in found]


def experiment_summary(services: Services, workspace: str, name: str, client: Client | None = None
                       ) -> e.ExperimentSummary:
    """An experiment with its number of runs and its newest run's status."""
    names.experiment_name(name)
    if client is not None:
        return remote.WorkspacesAPI(client).experiment(workspace, name)
    found = services.workspaces.get_experiment(workspace, name)
    listed = runs(services, workspace, name)
    return e.ExperimentSummary(found, len(listed), listed[0].status if listed else None)


def experiment(services: Services, workspace: str, name: str, client: Client | None = None) -> e.Experiment:
    names.experiment_name(name)
    if client is None:
        return services.workspaces.get_experiment(workspace, name)
    return remote.WorkspacesAPI(client).experiment(workspace, name).experiment
