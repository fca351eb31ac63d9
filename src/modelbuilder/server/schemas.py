"""The API's request and response bodies: `XCreate` for what a client sends, `XPublic` for what it gets.

Every field a client sends carries explicit bounds (length, pattern, range), so a request that is
out of shape is answered 422 before any service runs. Patterns repeat `modelbuilder.names`; the
services validate again with the shared validators, which stay the one source of truth.

No field names a storage location: a run's artifact folder is derived from its id on the server. The
recipe's `data` (and `validation_data`, `weights`) are paths on the server host that training *reads*.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from modelbuilder.core import entities as e
from modelbuilder.names import looks_like_data_ref
from modelbuilder.results.runtime import ModelOutput
from modelbuilder.sdk.insight import Prediction
from modelbuilder.server import API_PREFIX
from modelbuilder.server.schemas_sweep import SearchCreate

WORKSPACE_PATTERN = r"^[A-Za-z0-9-]{3,33}$"
EXPERIMENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,35}$"
COMPUTE_PATTERN = r"^[A-Za-z0-9-]{2,16}$"
PROJECT_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
IDEMPOTENCY_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
RESOURCE_GROUP_PATTERN = r"^[A-Za-z0-9_.()-]{0,89}[A-Za-z0-9_()-]$"
MAX_PATH = 4096


def _host_path(value: str) -> str:
    """A path on the server host: absolute, printable, no NUL (the OS would refuse it anyway)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters (NUL, newline, ...)")
    if not value.startswith("/"):
        raise ValueError("must be an absolute path on the server host, like '/data/pets'")
    return value


def _data_source(value: str) -> str:
    """Training data: a data asset by name (pets, pets:2), or a path on the server host (`_host_path`)."""
    return value if looks_like_data_ref(value) else _host_path(value)


HostPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH), AfterValidator(_host_path)]
DataSource = Annotated[str, Field(min_length=1, max_length=MAX_PATH), AfterValidator(_data_source)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------------------
class StepPublic(BaseModel):
    action: str = Field(description="What to do, e.g. list_runs, create_workspace.")
    args: dict[str, str] = Field(description="What it acts on: workspace, compute, run, model, data.")


class FixPublic(BaseModel):
    hint: str = Field(description="The hint with ' ({name})' where `steps[name]` goes, for a client to word "
                                  "each step in its own terms (the CLI as its command).")
    steps: dict[str, StepPublic]


class ErrorPublic(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found, invalid_input.")
    message: str = Field(description="What was wrong.")
    hint: str = Field(description="How to fix it, in one line.")
    fix: FixPublic | None = Field(default=None, description="Where the hint names steps (a request to send, "
                                  "a command to run): the hint with each step's place, and the steps.")


# --- workspaces and experiments -------------------------------------------------------------------------
class WorkspaceCreate(Strict):
    name: str = Field(pattern=WORKSPACE_PATTERN, description="3 to 33 letters, digits and hyphens.")
    region: str = Field(default="local", min_length=1, max_length=64, description="A configured region.")
    resource_group: str = Field(default="default", pattern=RESOURCE_GROUP_PATTERN, max_length=90)


class WorkspacePublic(BaseModel):
    id: str
    name: str
    region: str
    resource_group: str
    created_at: datetime

    @classmethod
    def of(cls, ws: e.Workspace) -> WorkspacePublic:
        return cls(id=ws.id, name=ws.name, region=ws.region, resource_group=ws.resource_group,
                   created_at=ws.created_at)


class WorkspaceDeleted(BaseModel):
    deleted: str
    runs_deleted: list[str]


class ExperimentPublic(BaseModel):
    id: str
    workspace: str
    name: str
    created_at: datetime
    runs: int = Field(description="How many runs the experiment has (up to 10,000 counted).")
    latest_status: str | None = Field(default=None, description="Its newest run's status; null before its first.")

    @classmethod
    def of(cls, summary: e.ExperimentSummary, workspace: str) -> ExperimentPublic:
        x = summary.experiment
        return cls(id=x.id, workspace=workspace, name=x.name, created_at=x.created_at, runs=summary.runs,
                   latest_status=summary.latest_status)


# --- computes -------------------------------------------------------------------------------------------
class ComputeCreate(Strict):
    name: str = Field(pattern=COMPUTE_PATTERN, description="2 to 16 letters, digits and hyphens.")
    size: str = Field(min_length=1, max_length=64, description="A size from GET /api/v1/sizes, or 'auto'.")
    priority: Literal["dedicated", "low-priority"] = "dedicated"
    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(default=None, min_length=1, max_length=512,
                                description="The Ray cluster's address (kind ray only).")


class ComputePublic(BaseModel):
    id: str
    workspace: str
    name: str
    size: str
    priority: str
    kind: str
    address: str | None
    state: str = Field(description="Creating, Succeeded, Failed or Deleting.")
    error: str | None = Field(description="Why provisioning failed (state Failed).")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: e.Compute, workspace: str) -> ComputePublic:
        return cls(id=c.id, workspace=workspace, name=c.name, size=c.size, priority=c.priority, kind=c.kind,
                   address=c.address, state=c.state, error=c.error, created_at=c.created_at,
                   updated_at=c.updated_at)


class ComputeDeleted(BaseModel):
    deleted: str
    canceled_runs: list[str]


class SizePublic(BaseModel):
    name: str
    vcpus: int
    memory_gib: float
    temp_storage_gib: float
    gpus: int
    gpu_memory_gib: float
    max_data_disks: int
    max_nics: int
    price_per_hour: float = Field(description="USD per hour, dedicated.")
    gpu_model: str
    price_per_hour_low_priority: float = Field(description="USD per hour, low-priority.")


# --- runs -----------------------------------------------------------------------------------------------
class RecipeCreate(Strict):
    """The training recipe (`TrainConfig`); anything left out keeps the recipe's default."""

    data: DataSource = Field(description="A data asset (pets for its latest version, pets:2), or training data on "
                                       "the server host: a folder with one sub-folder per label, or a "
                                       ".tsv/.csv/.jsonl manifest.")
    validation_data: HostPath | None = None
    task: Literal["auto", "multiclass", "multilabel"] | None = Field(
        default=None, description="multiclass, multilabel, or auto (default: multilabel where the manifest lists "
                                  "several labels per image).")
    name: str | None = Field(default=None, pattern=PROJECT_PATTERN,
                             description="<Name> of the generated projects (default: from the data folder).")
    architecture: Literal["resnet50", "resnet18", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_800mf",
                          "convnext_tiny", "tiny"] | None = None
    weights: Literal["auto", "none"] | None = Field(
        default=None, description="auto (ImageNet weights when available) or none (random initialisation).")
    mode: Literal["auto", "full", "head"] | None = None
    image_size: int | None = Field(default=None, ge=16, le=1024)
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    lr: Finite | None = Field(default=None, gt=0, le=10)
    backbone_lr_scale: Finite | None = Field(default=None, ge=0, le=10)
    weight_decay: Finite | None = Field(default=None, ge=0, le=10)
    warmup_epochs: Finite | None = Field(default=None, ge=0, le=1000)
    label_smoothing: Finite | None = Field(default=None, ge=0, lt=1)
    class_weights: Literal["none", "sqrt", "balanced"] | None = Field(
        default=None, description="Weigh the loss by label against imbalance: none (default), sqrt, or balanced.")
    crop_scale_min: Finite | None = Field(default=None, gt=0, le=1)
    mixup_alpha: Finite | None = Field(default=None, ge=0, le=10, description="MixUp's Beta(alpha, alpha); 0: off.")
    cutmix_alpha: Finite | None = Field(default=None, ge=0, le=10, description="CutMix's Beta(alpha, alpha); 0: off.")
    ema_decay: Finite | None = Field(default=None, ge=0, lt=1, description="Evaluate and export a moving average "
                                                                         "of the weights; 0: off.")
    zero_init_residual: bool | None = None
    hflip: bool | None = None
    validation_fraction: Finite | None = Field(default=None, gt=0, lt=1)
    early_stopping_patience: int | None = Field(default=None, ge=1, le=10_000)
    time_budget_s: Finite | None = Field(default=None, gt=0, le=30 * 24 * 3600)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    precision: Literal["auto", "bf16", "fp32"] | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    bn_recalibration_images: int | None = Field(default=None, ge=0, le=1_000_000)
    head_epochs: int | None = Field(default=None, ge=1, le=10_000)
    head_lr: Finite | None = Field(default=None, gt=0, le=10)
    device: str | None = Field(default=None, pattern=r"^(auto|cpu|cuda|cuda:[0-9]{1,2})$")
    processes: int | None = Field(default=None, ge=1, le=64, description="Data-parallel processes (default: one "
                                                                         "per GPU of the compute).")
    loader_threads: int | None = Field(default=None, ge=1, le=256)
    from_run: str | None = Field(default=None, pattern=r"^run-[0-9a-f]{12}$",
                                 description="Start from this finished run's best model: with the same labels it "
                                             "continues (learning rates x continue_lr_scale); with others its "
                                             "backbone is kept and the head rebuilt.")
    continue_lr_scale: Finite | None = Field(default=None, gt=0, le=10)


class RunCreate(Strict):
    workspace: str = Field(default="default", pattern=WORKSPACE_PATTERN,
                           description="'default' is made on first use with its local compute 'local'.")
    experiment: str = Field(pattern=EXPERIMENT_PATTERN, description="The first run under a new name registers it.")
    compute: str = Field(default="local", pattern=COMPUTE_PATTERN)
    recipe: RecipeCreate
    search: SearchCreate | None = Field(default=None, description="Start a sweep: trials, the best one's result.")
    idempotency_key: str | None = Field(default=None, pattern=IDEMPOTENCY_PATTERN,
                                        description="Submitting the same request again with this key returns the "
                                                    "same run (also accepted as the Idempotency-Key header).")


class ValidationImagePublic(BaseModel):
    """One validation image: its index (for its thumbnail), path relative to the data, labels and scores. A
    multi-label run's: `true_label` / `predicted_label` its labels joined by ';' (also listed), `score` the
    margin of `scored_label`'s score from its threshold, `true_score` that label's score, `label_scores`
    every label's."""

    index: int
    path: str
    true_label: str
    predicted_label: str
    score: float
    true_score: float
    correct: bool
    true_labels: list[str]
    predicted_labels: list[str]
    scored_label: str | None = None
    label_scores: dict[str, float] | None = None

    @classmethod
    def of(cls, row: Prediction) -> ValidationImagePublic:
        return cls(index=row.index, path=row.path, true_label=row.true_label, predicted_label=row.predicted_label,
                   score=row.score, true_score=row.true_score, correct=row.correct, true_labels=list(row.true_labels),
                   predicted_labels=list(row.predicted_labels), scored_label=row.scored_label,
                   label_scores=row.label_scores or None)


class StatusChangePublic(BaseModel):
    status: str
    reason: str
    at: datetime
    attempt: int

    @classmethod
    def of(cls, change: e.StatusChange) -> StatusChangePublic:
        return cls(status=change.status, reason=change.reason, at=change.at, attempt=change.attempt)


class RunPublic(BaseModel):
    id: str
    workspace: str
    experiment: str
    compute: str
    compute_size: str
    priority: str
    status: str = Field(description="Queued, Preparing, Running, Finalizing, Completed, Failed, Canceled or "
                                    "Preempted.")
    status_reason: str
    terminal: bool
    project_name: str | None
    recipe: dict[str, Any]
    progress: dict[str, Any] = Field(description="phase, epoch, epochs, step, steps, loss, accuracy, "
                                                 "images_per_s, eta_s (what the worker last reported).")
    best_metrics: dict[str, Any]
    error: str | None
    attempt: int
    preemptions: int
    error_retries: int
    max_error_retries: int = Field(description="How many times an attempt that fails is retried (error_retries: "
                                               "how many were).")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None = Field(description="From the start of training to its end (or to now).")
    compute_seconds: float
    cost: float
    has_results: bool = Field(description="Whether MLModel.zip and the projects can be downloaded.")
    portal_path: str = Field(description="The run's page in the portal, relative to the server's address.")
    parent_run_id: str | None = Field(default=None, description="The sweep this run is a trial of.")
    trial: dict[str, Any] | None = Field(default=None, description="A trial's number and settings.")
    sweep: dict[str, Any] | None = Field(default=None, description="A sweep's space and search settings.")

    @classmethod
    def of(cls, run: e.Run, workspace: str, has_results: bool) -> RunPublic:
        duration = None
        if run.started_at is not None:
            duration = ((run.ended_at or e.utcnow()) - run.started_at).total_seconds()
        return cls(
            id=run.id, workspace=workspace, experiment=run.experiment_name, compute=run.compute_name,
            compute_size=run.compute_size, priority=run.priority, status=run.status,
            status_reason=run.status_reason, terminal=run.terminal, project_name=run.project_name,
            recipe=run.recipe, progress=run.progress, best_metrics=run.best_metrics, error=run.error,
            attempt=run.attempt, preemptions=run.preemptions, error_retries=run.error_retries,
            max_error_retries=run.max_error_retries, cancel_requested=run.cancel_requested,
            created_at=run.created_at, started_at=run.started_at, ended_at=run.ended_at, duration_s=duration,
            compute_seconds=run.compute_seconds, cost=run.cost,
            has_results=has_results, portal_path=f"/workspaces/{workspace}/runs/{run.id}",
            parent_run_id=run.parent_run_id, trial=run.trial, sweep=run.sweep,
        )


# --- what a run records ---------------------------------------------------------------------------------
class MetricPointPublic(BaseModel):
    key: str
    step: int = Field(description="The epoch (1-based).")
    value: float | None = Field(description="null stands for NaN (a diverged loss).")
    at: datetime

    @classmethod
    def of(cls, point: e.MetricPoint) -> MetricPointPublic:
        return cls(key=point.key, step=point.step, value=point.value, at=point.at)


class StepMetricsPublic(BaseModel):
    step: int
    values: dict[str, float | None]


class LogLinePublic(BaseModel):
    seq: int
    at: datetime
    level: str
    message: str
    attempt: int

    @classmethod
    def of(cls, line: e.LogLine) -> LogLinePublic:
        return cls(seq=line.seq, at=line.at, level=line.level, message=line.message, attempt=line.attempt)


class LogTailPublic(BaseModel):
    lines: list[LogLinePublic]
    next_seq: int = Field(description="Pass as after_seq to get only newer lines.")
    status: str
    terminal: bool


class ArtifactPublic(BaseModel):
    path: str
    size: int
    sha256: str
    created_at: datetime
    url: str

    @classmethod
    def of(cls, record: e.ArtifactRecord) -> ArtifactPublic:
        return cls(path=record.path, size=record.size, sha256=record.sha256, created_at=record.created_at,
                   url=f"{API_PREFIX}/runs/{record.run_id}/artifacts/{record.path}")


class ExportCreate(Strict):
    quantize: Literal["int8"] = Field(default="int8", description="What to write: int8 (static, calibrated on the "
                                                                  "run's validation images).")
    calibration_images: int = Field(default=200, ge=1, le=100_000,
                                    description="The most validation images to calibrate on.")


class ExportPublic(BaseModel):
    quantize: str
    artifacts: list[ArtifactPublic] = Field(description="bestModel.int8.onnx and MLModel.int8.zip, in the run's "
                                                        "folder.")
    images: int = Field(description="Validation images both models were measured on.")
    calibration_images: int
    float_accuracy: float
    int8_accuracy: float
    float_ms_per_image: float = Field(description="At batch 32, on this server.")
    int8_ms_per_image: float
    speedup: float
    float_bytes: int
    int8_bytes: int
    weight_bits: int = Field(description="7 on CPUs without VNNI, whose int8 kernels could overflow with 8.")
    calibration: str = Field(description="averaged or extremes: the activation ranges kept.")
    calibration_scores: dict[str, dict[str, float]]


class PredictionPublic(BaseModel):
    prediction: str
    score: list[float] = Field(description="The probability of every label, in labels order.")
    labels: list[str]
    scores: dict[str, float]
    predicted_labels: list[str] | None = Field(
        default=None, description="A multi-label model's labels whose score reaches their threshold (absent for "
                                  "a multi-class model).")

    @classmethod
    def of(cls, output: ModelOutput, labels: list[str]) -> PredictionPublic:
        return cls(prediction=output.prediction, score=output.score, labels=labels,
                   scores=dict(zip(labels, output.score, strict=True)), predicted_labels=output.predicted_labels)


class ExplanationPublic(PredictionPublic):
    label: str = Field(description="The label the heatmaps explain: the prediction unless another was asked for.")
    width: int = Field(description="The image's width in pixels, and every overlay's.")
    height: int = Field(description="The image's height in pixels, and every overlay's.")
    overlays: dict[str, str] = Field(description="Per method (gradcam, integrated_gradients): the heatmap over the "
                                                 "image, a PNG of the image's size, base64-encoded.")


class HealthPublic(BaseModel):
    status: Literal["ok"]
    version: str
    agent: bool = Field(description="Whether this server runs a scheduler agent that starts queued runs.")
    streams: int = Field(description="Live event streams open now (clients on a run's page).")
    followed_runs: int = Field(description="Runs those streams follow (the server reads each once per poll).")


# --- registered models ----------------------------------------------------------------------------------
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}$"
MODEL_ALIAS_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"
MODEL_WHICH_PATTERN = r"^([0-9]{1,10}|[A-Za-z][A-Za-z0-9_-]{0,31})$"


class ModelRegister(Strict):
    run_id: str = Field(min_length=1, max_length=40, description="A finished run of this workspace.")
    name: str = Field(pattern=MODEL_NAME_PATTERN, description="2 to 64 letters, digits, '_' and '-'.")
    alias: str | None = Field(default=None, pattern=MODEL_ALIAS_PATTERN,
                              description="Point this alias (for example production) at the new version.")


class ModelAliasSet(Strict):
    version: int = Field(ge=1, le=1_000_000_000, description="The version the alias names.")


class ModelVersionPublic(BaseModel):
    model: str
    version: int
    reference: str = Field(description="NAME:VERSION, as `modelbuilder serve` and `predict` take it.")
    run_id: str = Field(description="The run whose result this version is.")
    metrics: dict[str, Any] = Field(description="The run's metrics when it was registered.")
    aliases: list[str]
    created_at: datetime

    @classmethod
    def of(cls, v: e.ModelVersion) -> ModelVersionPublic:
        return cls(model=v.model, version=v.version, reference=v.ref, run_id=v.run_id, metrics=v.metrics,
                   aliases=list(v.aliases), created_at=v.created_at)


class RegisteredModelPublic(BaseModel):
    name: str
    workspace: str
    aliases: dict[str, int] = Field(description="Alias -> version.")
    versions: list[ModelVersionPublic] = Field(description="Newest first.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, m: e.RegisteredModel, workspace: str) -> RegisteredModelPublic:
        return cls(name=m.name, workspace=workspace, aliases=m.aliases,
                   versions=[ModelVersionPublic.of(v) for v in m.versions], created_at=m.created_at,
                   updated_at=m.updated_at)
