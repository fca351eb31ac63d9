"""Registered models, as every face uses them: register a finished run's result under a name (versions 1,
2, ...), list and show them, point an alias at a version, find the model a `name:version` or
`name:alias` reference means, and download a version's result.

`modelbuilder models ...`, the SDK's `Model` / `modelbuilder.sdk.registry` and
`/api/v1/workspaces/{workspace}/models` call these. A version is the result of a run: its files stay
in the run's folder, and a download writes the generated projects again with the version's number, so
`<Name>.Model` and `<Name>.WebApi` report it.

With a `client` (`sdk.client.Client`: a server and no store shared with it) they go through that API
(`sdk.remote_models.ModelsAPI`) and answer the same entities, in the workspace given, else the one `modelbuilder
workspace use` chose, else `default`.
"""

from __future__ import annotations

from pathlib import Path

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.results.codegen import generate_projects
from modelbuilder.results.files import ZIP_FILE, project_folders
from modelbuilder.results.runtime import read_model_package
from modelbuilder.sdk import remote, remote_models, results, workspaces
from modelbuilder.sdk.client import Client


def workspace_of(services: Services, run: e.Run) -> str:
    return services.workspaces.names_by_id()[run.workspace_id]


def register(services: Services, run_id: str, name: str, *, alias: str | None = None,
             workspace: str | None = None, client: Client | None = None) -> e.ModelVersion:
    """The run's result as the next version of `name`, in the run's workspace (which must be `workspace`
    when one is given); the run must have results."""
    names.model_name(name)
    if alias is not None:
        names.model_alias(alias)
    if client is not None:
        run = remote.RunsAPI(client).get(run_id)
        return remote_models.ModelsAPI(client).register(workspace or run.workspace_id, run.id, name, alias)
    run = services.runs.get(run_id)
    folder = results.require_results(services, run)
    metrics = read_model_package(folder / ZIP_FILE).pipeline.get("metrics") or {}
    return services.models.register(workspace or workspace_of(services, run), run.id, name, metrics, alias)


def models(services: Services, workspace: str | None = None, client: Client | None = None
           ) -> list[e.RegisteredModel]:
    workspace = workspaces.in_use(services, workspace, client)[0]
    return services.models.list(workspace) if client is None else remote_models.ModelsAPI(client).list_models(workspace)


def show(services: Services, name: str, workspace: str | None = None, client: Client | None = None
         ) -> e.RegisteredModel:
    names.model_name(name)
    workspace = workspaces.in_use(services, workspace, client)[0]
    if client is None:
        return services.models.get(workspace, name)
    return remote_models.ModelsAPI(client).get(workspace, name)


def resolve(services: Services, reference: str, workspace: str | None = None, client: Client | None = None
            ) -> e.ModelVersion:
    """The version `reference` means: NAME (the latest), NAME:VERSION or NAME:ALIAS."""
    name, which = names.model_ref(reference)
    workspace = workspaces.in_use(services, workspace, client)[0]
    if client is not None:
        return remote_models.ModelsAPI(client).version(workspace, name, which)
    return services.models.version(workspace, name, which)


def set_alias(services: Services, reference: str, alias: str, workspace: str | None = None,
              client: Client | None = None) -> e.ModelVersion:
    """Point `alias` at the version `reference` means (NAME:VERSION, or NAME:ALIAS to copy an alias)."""
    names.model_alias(alias)
    version = resolve(services, reference, workspace, client)
    workspace = workspaces.in_use(services, workspace, client)[0]
    if client is not None:
        return remote_models.ModelsAPI(client).set_alias(workspace, version.model, alias, version.version)
    return services.models.set_alias(workspace, version.model, alias, version.version)


def remove_alias(services: Services, name: str, alias: str, workspace: str | None = None,
                 client: Client | None = None) -> None:
    names.model_name(name)
    names.model_alias(alias)
    workspace = workspaces.in_use(services, workspace, client)[0]
    if client is not None:
        remote_models.ModelsAPI(client).remove_alias(workspace, name, alias)
    else:
        services.models.remove_alias(workspace, name, alias)


def model_zip(services: Services, version: e.ModelVersion, client: Client | None = None) -> Path:
    """The version's MLModel.zip: in its run's folder, or for a client of a server, fetched once into its home."""
    if client is not None:
        return remote_models.ModelsAPI(client).model_file(version.run_id, services.settings.resolved_home)
    return results.require_results(services, services.runs.get(version.run_id)) / ZIP_FILE


def download(services: Services, reference: str, output: str | Path, workspace: str | None = None,
             client: Client | None = None) -> tuple[e.ModelVersion, dict[str, Path]]:
    """The version's three assets and generated projects in `output`, the projects carrying its number."""
    version = resolve(services, reference, workspace, client)
    if client is not None:
        acting = workspaces.in_use(services, workspace, client)[0]
        return version, remote_models.ModelsAPI(client).download(acting, version, output)
    run = services.runs.get(version.run_id)
    target = Path(output).expanduser()
    placed = results.download(services, run, target)
    project = results.project_name(run)
    console_app = target / project_folders(project)[0]
    sample = next(iter(sorted(console_app.glob("sample.*"))), None)
    generate_projects(project, target, target / ZIP_FILE, sample, overwrite=True, version=str(version.version))
    return version, placed
