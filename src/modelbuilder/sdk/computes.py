"""Computes, as the CLI reads and changes them: create, list, show, delete, evict (a drill), and the size
catalog with its prices.

With a `client` (`sdk.client.Client`: a server and no store shared with it) they go through the REST API and
come back as the entities the store gives (`sdk.remote.WorkspacesAPI`), so one renderer shows both; without,
through the store in this process.

    from modelbuilder.sdk import computes
    compute = computes.create(services, "team", "gpu", "Standard_NC6", client=client)
"""

from __future__ import annotations

from dataclasses import dataclass

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.scheduler import evict as evict_runs
from modelbuilder.core.services import Services
from modelbuilder.core.sizes import SizeSpec, default_catalog
from modelbuilder.errors import InvalidInput
from modelbuilder.sdk import remote
from modelbuilder.sdk.client import Client


@dataclass(frozen=True)
class PricedSize:
    spec: SizeSpec
    dedicated: float  # USD per hour
    low_priority: float


def create(services: Services, workspace: str, name: str, size: str, priority: str = "dedicated",
           kind: str = "local", address: str | None = None, client: Client | None = None) -> e.Compute:
    """Create a compute and check its size can be met: state Succeeded, or Failed with its error (the name
    stays taken until it is deleted)."""
    if client is None:
        return services.computes.create(workspace, name, size, priority, kind, address)
    names.compute_name(name)
    return remote.WorkspacesAPI(client).create_compute(workspace, name, size, names.priority(priority),
                                                       names.compute_kind(kind), address)


def list_computes(services: Services, workspace: str, client: Client | None = None) -> list[e.Compute]:
    """The workspace's computes, by name."""
    return services.computes.list(workspace) if client is None else remote.WorkspacesAPI(client).computes(workspace)


def get(services: Services, workspace: str, name: str, client: Client | None = None) -> e.Compute:
    names.compute_name(name)
    if client is None:
        return services.computes.get(workspace, name)
    return remote.WorkspacesAPI(client).compute(workspace, name)


def delete(services: Services, workspace: str, name: str, force: bool = False, client: Client | None = None
           ) -> list[str]:
    """Delete a compute in any state; the ids of the runs `force` canceled (its ended runs stay)."""
    names.compute_name(name)
    if client is None:
        return services.computes.delete(workspace, name, force=force)
    return remote.WorkspacesAPI(client).delete_compute(workspace, name, force=force)


def evict(services: Services, workspace: str, name: str, client: Client | None = None) -> list[str]:
    """Interrupt the running runs of a low-priority compute, as a spot eviction would; the ids of those runs."""
    names.compute_name(name)
    if client is not None:
        raise InvalidInput("Evicting a compute's runs cannot be asked of a server: its API has no such request.",
                           f"run 'modelbuilder compute evict {name} --workspace {workspace}' on the server's host.")
    return evict_runs(services.store, workspace, name)


def sizes(services: Services, client: Client | None = None) -> list[PricedSize]:
    """The size catalog with hourly list prices, `auto` last: this host's (needs no store), or through a
    server its catalog, where `auto` is the server's host."""
    if client is not None:
        return [PricedSize(spec, spec.price_per_hour, low) for spec, low in remote.WorkspacesAPI(client).sizes()]
    catalog = default_catalog()
    return [PricedSize(spec, catalog.price_per_hour(spec.name, "dedicated"),
                       catalog.price_per_hour(spec.name, "low-priority")) for spec in catalog.sizes()]
