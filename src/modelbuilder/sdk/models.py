"""Which model a command means: a run id, an MLModel.zip (or its folder), or a registered model, and
the SDK's `Model`, which predicts and scores with it.

`modelbuilder predict`, `modelbuilder serve` and the SDK name a model the same way; `model_file`
turns the name into the MLModel.zip to load.

    from modelbuilder.sdk import Model

    model = Model("run-0123456789ab")        # or Model("pets:production"), Model("out/MLModel.zip")
    print(model.predict("photo.jpg").prediction)
    summary = model.score("new-photos/", "scores.csv")
    print(summary.images, summary.images_per_s)

    Model.register("run-0123456789ab", "pets", alias="production")   # version 1, 2, ...
    Model.download("pets:production", "out/")

Each takes a `client` (`sdk.client.Client`: a server and no store shared with it) to name the server's runs
and registered models instead; a model to predict with is then fetched once into this home.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuilder import names
from modelbuilder.core import entities as e
from modelbuilder.core.entities import RUN_ID
from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput, NotFound
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.results.runtime import ModelOutput, PredictionEngine
from modelbuilder.sdk import registry, remote, remote_models, scoring, workspaces
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.explain import explain_folder, run_folder
from modelbuilder.sdk.objects import client_of, default_services
from modelbuilder.sdk.results import require_results

if TYPE_CHECKING:
    from modelbuilder.training.explain import Explanation

MODEL_HELP = ("a run id (run-0123456789ab), a registered model (pets, pets:3 or pets:production), or the path of "
              "an MLModel.zip (or of a folder holding its three files)")


@dataclass(frozen=True)
class ModelSource:
    """The MLModel.zip a model's name means, with the name and version a server reports for it."""

    path: Path
    name: str
    version: str


def source(services: Services, model: str, workspace: str | None = None, client: Client | None = None
           ) -> ModelSource:
    """What `model` names; the store is opened only for a run id or a registered model (of `workspace`,
    default the one in use). With a `client` (a server and no store shared with it) a run's or a registered
    version's MLModel.zip is fetched from the server once, into this home (`sdk.remote_models.ModelsAPI.model_file`)."""
    if RUN_ID.fullmatch(model):
        if client is not None:
            run = remote.RunsAPI(client).get(model)
            path = remote_models.ModelsAPI(client).model_file(run.id, services.settings.resolved_home)
            return ModelSource(path, run.project_name or model, run.id)
        run = services.runs.get(model)
        return ModelSource(require_results(services, run) / ZIP_FILE, run.project_name or model, run.id)
    path = Path(model).expanduser()
    if path.exists():
        return ModelSource(path, path.stem if path.is_file() else path.name, "file")
    unknown = InvalidInput(f"Model {model!r} is neither a run id, a registered model nor an existing file.",
                           f"give {MODEL_HELP}.")
    try:
        name, _ = names.model_ref(model)
    except InvalidInput:
        if ":" in model:
            raise  # meant as NAME:VERSION: say what is wrong with it
        raise unknown from None
    if client is not None:
        if remote_models.ModelsAPI(client).find(workspaces.in_use(services, workspace, client)[0], name) is None:
            raise unknown
    else:
        workspace = services.workspaces.get(services.workspaces.in_use(workspace)[0]).name  # a missing one: its error
        try:
            registry.show(services, name, workspace)
        except NotFound:
            raise unknown from None
    version = registry.resolve(services, model, workspace, client)
    return ModelSource(registry.model_zip(services, version, client), version.model, str(version.version))


def model_file(services: Services, model: str, workspace: str | None = None, client: Client | None = None) -> Path:
    """The MLModel.zip (or folder) that `model` names (see `source`)."""
    return source(services, model, workspace, client).path


def load_engine(services: Services, model: str, workspace: str | None = None, client: Client | None = None
                ) -> PredictionEngine:
    return PredictionEngine.load(model_file(services, model, workspace, client))


def explain(services: Services, model: str, image: Any, *, label: str | None = None,
            workspace: str | None = None, client: Client | None = None
            ) -> Explanation | remote_models.ServerExplanation:
    """Heatmaps of where the model `model` names finds `label` (default: its prediction) in `image`; the
    model must be a run's (a run id, a registered model, a run's MLModel.zip): see `sdk.explain`. With a
    `client` (a server and no store shared with it), a run or registered model of the server is explained by
    the server, from the run's checkpoint there; `image` is then a file's path or its bytes."""
    if client is not None and (RUN_ID.fullmatch(model) or not Path(model).expanduser().exists()):
        run_id = model if RUN_ID.fullmatch(model) else registry.resolve(services, model, workspace, client).run_id
        return remote_models.ModelsAPI(client).explain_image(run_id, image, label)
    return explain_folder(run_folder(model_file(services, model, workspace), model), image, label)


class Model:
    """A trained model to predict with, named as `modelbuilder predict` names one (see MODEL_HELP)."""

    def __init__(self, model: str, *, workspace: str | None = None, services: Services | None = None,
                 client: Client | None = None) -> None:
        """With `client` (a server and no store shared with it), a run or registered model of that server,
        its MLModel.zip fetched once into this home."""
        self.services, client = _acting(services, client)
        self.path = model_file(self.services, model, workspace, client)
        self.name = model

    @cached_property
    def engine(self) -> PredictionEngine:
        return PredictionEngine.load(self.path)

    @property
    def labels(self) -> list[str]:
        return self.engine.labels

    def predict(self, image: Any) -> ModelOutput:
        """One image: a path, bytes, a PIL image or a numpy array."""
        return self.engine.predict(image)

    def explain(self, image: Any, label: str | None = None) -> Explanation:
        """Heatmaps (Grad-CAM, integrated gradients) of where the model finds `label` (default: its
        prediction) in `image`, with overlays as PNGs of the image's size; needs the run's checkpoint."""
        return explain_folder(run_folder(self.path, self.name), image, label)

    def score(self, images: str | Path, output: str | Path, *, batch_size: int = scoring.BATCH_SIZE,
              workers: int | None = None) -> scoring.ScoringSummary:
        """Every image of a folder or manifest into `output` (.csv or .jsonl), one row each, decoded on
        `workers` threads while the model runs; the summary says how many and how fast (images_per_s)."""
        scoring.check_output(output)
        return scoring.score_to_file(self.engine, scoring.images_in(images), output, batch_size=batch_size,
                                     workers=workers)

    # --- the registry: names with numbered versions -----------------------------------------------------
    @staticmethod
    def register(run_id: str, name: str, *, alias: str | None = None, services: Services | None = None,
                 client: Client | None = None) -> e.ModelVersion:
        """The run's result as the next version of `name` (1, 2, ...); `alias` (production) then names it."""
        s, client = _acting(services, client)
        return registry.register(s, run_id, name, alias=alias, client=client)

    @staticmethod
    def registered(workspace: str | None = None, *, services: Services | None = None,
                   client: Client | None = None) -> list[e.RegisteredModel]:
        s, client = _acting(services, client)
        return registry.models(s, workspace, client)

    @staticmethod
    def show(name: str, workspace: str | None = None, *, services: Services | None = None,
             client: Client | None = None) -> e.RegisteredModel:
        s, client = _acting(services, client)
        return registry.show(s, name, workspace, client)

    @staticmethod
    def set_alias(reference: str, alias: str, workspace: str | None = None, *,
                  services: Services | None = None, client: Client | None = None) -> e.ModelVersion:
        """Point `alias` at the version `reference` (pets:3) means."""
        s, client = _acting(services, client)
        return registry.set_alias(s, reference, alias, workspace, client)

    @staticmethod
    def download(reference: str, output: str | Path, workspace: str | None = None, *,
                 services: Services | None = None, client: Client | None = None) -> dict[str, Path]:
        """A registered version's assets and generated projects (which carry its number) into `output`."""
        s, client = _acting(services, client)
        return registry.download(s, reference, output, workspace, client)[1]

    def __repr__(self) -> str:
        return f"Model({self.name!r})"


def _acting(services: Services | None, client: Client | None) -> tuple[Services, Client | None]:
    """The services a call acts through (this process's by default) and its API client: the one given, else
    the server its settings name (`sdk.objects.client_of`), as the SDK's other objects do."""
    acting = services or default_services()
    return acting, client if client is not None else client_of(acting)
