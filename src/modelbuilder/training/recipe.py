"""The training recipe: a frozen dataclass whose defaults are the recipe.

Precedence is CLI flags > a YAML file > these defaults. The final recipe is written to the run
folder (`recipe.json`) and into every checkpoint, so a result always says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.errors import InvalidInput, step

ARCHITECTURES = ("resnet50", "resnet18", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_800mf", "convnext_tiny",
                 "tiny")
PRECISIONS = ("auto", "bf16", "fp32")
MODES = ("auto", "full", "head")
CLASS_WEIGHTS = ("none", "sqrt", "balanced")  # the loss weighted by label: Azure's weighted loss 0, 1, 2
AUTO, MULTICLASS, MULTILABEL = "auto", "multiclass", "multilabel"
TASKS = (AUTO, MULTICLASS, MULTILABEL)  # auto: multi-label where the data is written so (training/data.task_of)
DEFAULT_EPOCHS = 15  # when neither --epochs nor --time-budget says otherwise


@dataclass(frozen=True)
class TrainConfig:
    data: str
    validation_data: str | None = None
    task: str = AUTO  # multiclass (softmax, one label per image) | multilabel (sigmoid, several) | auto
    name: str | None = None  # <Name> of the generated projects; derived from the data folder if unset
    architecture: str = "resnet50"
    weights: str = "auto"  # auto | none | PATH to a state dict
    mode: str = "auto"  # auto | full | head (head needs pretrained weights)
    image_size: int | None = None  # None: chosen from the data (median short side, 32..224)
    epochs: int | None = None  # None: planned to fit --time-budget, else DEFAULT_EPOCHS
    batch_size: int | None = None  # None: from the data, 16..64 (about 20 steps per epoch at least)
    lr: float = 2e-3
    backbone_lr_scale: float = 0.1  # applied to pretrained backbones only
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    class_weights: str = "none"  # none | sqrt | balanced: weigh the loss against label imbalance
    crop_scale_min: float = 0.5  # random resized crop: smallest area kept
    mixup_alpha: float = 0.0  # MixUp's Beta(alpha, alpha); 0: off
    cutmix_alpha: float = 0.0  # CutMix's Beta(alpha, alpha); 0: off (with both on, one of them per batch)
    ema_decay: float = 0.0  # evaluate and export a moving average of the weights; 0: off
    zero_init_residual: bool = True  # ResNets from scratch: residual blocks start as the identity
    hflip: bool = True  # random horizontal flips (turn off where mirrored images mean something else)
    validation_fraction: float = 0.2
    early_stopping_patience: int = 5
    time_budget_s: float | None = None
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    channels_last: bool | None = None  # None: on where bf16 is used
    compile: bool = False  # torch.compile, CUDA only
    bn_recalibration_images: int = 0  # >0: re-estimate BatchNorm statistics from a sample before each evaluation
    # (measured in docs/RECIPE.md: the running statistics did as well or better on every set, for free)
    head_epochs: int = 30  # for mode head / the head phase of auto
    head_lr: float = 1e-2
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    processes: int | None = None  # data-parallel processes; None: one per GPU of the compute, else 1
    loader_threads: int | None = None
    from_model: str | None = None  # start from this model's weights (a checkpoint: see training/start.py)
    from_run: str | None = None  # the run whose best checkpoint from_model is (recorded; the portal links it)
    continue_lr_scale: float = 0.1  # starting from a model with the same labels: learning rates times this
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise InvalidInput(
                f"Architecture {self.architecture!r} is not available.",
                f"use one of: {', '.join(ARCHITECTURES)}.",
            )
        if self.precision not in PRECISIONS:
            raise InvalidInput(f"Precision {self.precision!r} is not valid.", "use auto, bf16 or fp32.")
        if self.mode not in MODES:
            raise InvalidInput(f"Mode {self.mode!r} is not valid.", "use auto, full or head.")
        if self.class_weights not in CLASS_WEIGHTS:
            raise InvalidInput(f"class_weights {self.class_weights!r} is not valid.",
                               "use none, sqrt (a milder weighting) or balanced (each label weighs as much in total).")
        if self.task not in TASKS:
            raise InvalidInput(f"Task {self.task!r} is not valid.",
                               "use multiclass, multilabel or auto (from the data).")
        self.check_task(self.task)
        if self.name is not None:
            names.project_name(self.name)
        if self.mode == "head" and self.weights == "none" and not self.from_model:
            raise InvalidInput("Mode 'head' trains only a new head on pretrained features, but weights is 'none'.",
                               "use weights 'auto' or a weights file, or mode 'full'.")
        if self.epochs is not None:
            names.positive_int(self.epochs, "epochs", maximum=10_000)
        if self.batch_size is not None:
            names.positive_int(self.batch_size, "batch_size", maximum=4096)
        if self.image_size is not None:
            names.positive_int(self.image_size, "image_size", maximum=1024)
            if self.image_size < 16:
                raise InvalidInput(f"image_size {self.image_size} is too small.", "use 16 or more pixels.")
        names.fraction(self.validation_fraction, "validation_fraction")
        if self.processes is not None:
            names.positive_int(self.processes, "processes", maximum=64)
        if self.time_budget_s is not None:  # '10m' in a recipe file means what --time-budget 10m means
            object.__setattr__(self, "time_budget_s", names.duration_seconds(self.time_budget_s))
        if not 0 < self.continue_lr_scale <= 10:
            raise InvalidInput(f"continue_lr_scale must be in (0, 10], got {self.continue_lr_scale}.",
                               "use 0.1 (the default: a tenth of the learning rate when continuing a model).")
        if not self.lr > 0:
            raise InvalidInput(f"lr must be positive, got {self.lr}.", "use a learning rate such as 1e-3.")

    # --- derived -----------------------------------------------------------------------------------
    @staticmethod
    def auto_batch_size(train_images: int) -> int:
        """64 where there is data enough (fewer, larger steps run faster), down to 16 on a couple of hundred
        images so that an epoch still has a dozen or more steps to learn from."""
        return int(min(64, max(16, train_images // 20 // 8 * 8)))

    @property
    def planned_batch_size(self) -> int:
        """The batch size training uses: the engine sets it (`auto_batch_size`) once the data is read."""
        if self.batch_size is None:
            raise RuntimeError("the batch size is planned from the data before training (auto_batch_size)")
        return self.batch_size

    def check_task(self, task: str) -> None:
        """Refuse settings a multi-label training cannot take: at submission for `--task multilabel`, and for
        `auto` as soon as the data is found to be multi-label (before any image is decoded)."""
        if task == MULTILABEL and (self.class_weights != "none" or self.mixup_alpha or self.cutmix_alpha):
            raise InvalidInput("Multi-label training takes no class_weights, MixUp or CutMix"
                               + (" (the data gives images several labels)." if self.task == AUTO else "."),
                               "leave class_weights at none and mixup_alpha/cutmix_alpha at 0 for multi-label data.")

    def with_(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidInput(
                f"Unknown recipe setting(s): {', '.join(unknown)}.",
                f"use only: {', '.join(sorted(known))}.",
            )
        return cls(**values)

    @classmethod
    def from_sources(cls, yaml_path: str | Path | None = None, **overrides: Any) -> TrainConfig:
        """Defaults, then a YAML file, then explicit overrides (None means 'not given')."""
        values: dict[str, Any] = {}
        if yaml_path is not None:
            import yaml

            path = Path(yaml_path)
            if not path.is_file():
                raise InvalidInput(f"Recipe file {str(path)!r} does not exist.", "pass a YAML file path.")
            try:
                loaded = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise InvalidInput(f"Recipe file {str(path)!r} is not valid YAML: {exc}.", "fix the file.") from None
            if not isinstance(loaded, dict):
                raise InvalidInput(f"Recipe file {str(path)!r} must hold a mapping.", "write 'key: value' lines.")
            values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data" not in values:
            raise InvalidInput("No training data given.", "give a folder with one sub-folder per label, or a "
                               ".tsv/.csv/.jsonl manifest ({give}).", {"give": step("give_data")})
        return cls.from_dict(values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
