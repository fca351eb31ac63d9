"""Search spaces of a sweep: the built-in `auto` space around the default recipe, and a user's YAML space.

A space maps parameter names to distributions. Names are Azure AutoML for images' where Azure has
one (`model_name`, `learning_rate`, `number_of_epochs`, `training_batch_size`, `weight_decay`,
`training_crop_size`, `weighted_loss`, `early_stopping_patience`, `warmup_cosine_lr_warmup_epochs`),
or any recipe setting's own name (`crop_scale_min`, `label_smoothing`, ...). Distributions, as Azure
writes them:

    model_name: choice(resnet18, mobilenet_v3_large)      # or {type: choice, values: [...]}
    weight_decay: uniform(0.01, 0.1)                       # or {type: uniform, min_value: .., max_value: ..}
    learning_rate: loguniform(-9.2, -4.6)                  # exp(uniform(-9.2, -4.6)): Azure's bounds are
                                                           # natural logs; {type: loguniform, ...} the same
    number_of_epochs: 5                                    # a plain value is fixed, not searched

A file holds such a mapping, or Azure's sweep layout `search_space: [ {...} ]` (one subspace). The
sweep driver (`backends/sweep.py`) turns each into an Optuna distribution; a sampled trial's values become recipe
settings (`recipe_settings`). Every mistake in a file is refused with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.errors import InvalidInput
from modelbuilder.training.recipe import TrainConfig

AUTO = "auto"
# Azure's parameter name -> the recipe setting it sets.
AZURE_NAMES = {
    "model_name": "architecture",
    "learning_rate": "lr",
    "number_of_epochs": "epochs",
    "training_batch_size": "batch_size",
    "weight_decay": "weight_decay",
    "training_crop_size": "image_size",
    "weighted_loss": "class_weights",
    "early_stopping_patience": "early_stopping_patience",
    "warmup_cosine_lr_warmup_epochs": "warmup_epochs",
}
WEIGHTED_LOSS = {0: "none", 1: "sqrt", 2: "balanced"}  # Azure's weighted_loss values
# Settings a sweep decides itself, or that do not describe a model: never searched.
NOT_SEARCHED = frozenset({"data", "validation_data", "name", "time_budget_s", "device", "processes",
                          "loader_threads", "extra", "compile"})
UNSUPPORTED = {"layers_to_freeze": "modelbuilder trains the whole network (mode full) or a new head only "
                                   "(mode head); search 'mode' instead"}
KINDS = ("choice", "uniform", "loguniform")
SWEEP_FILE_KEYS = ("search_space", "sampling_algorithm", "early_termination", "limits")  # Azure's sweep layout
AZURE_POLICIES = {"median_stopping": "median", "median": "median", "hyperband": "hyperband", "none": "none"}
MIN_IMAGE_SIZE = 64  # the search's floor: smaller images learn too little to compare models by

# The built-in space around the default recipe (training/recipe.py): architectures of torchvision,
# optimisation, regularisation, augmentation strength (the smallest crop kept) and image size.
AUTO_SPACE: dict[str, dict[str, Any]] = {
    "model_name": {"type": "choice", "values": ["resnet50", "resnet18", "mobilenet_v3_large", "efficientnet_b0",
                                                "regnet_y_800mf"]},
    "learning_rate": {"type": "loguniform", "min_value": math.log(5e-4), "max_value": math.log(5e-3)},
    "weight_decay": {"type": "loguniform", "min_value": math.log(0.005), "max_value": math.log(0.1)},
    "training_batch_size": {"type": "choice", "values": [16, 32, 64]},
    "crop_scale_min": {"type": "uniform", "min_value": 0.25, "max_value": 0.8},
    "training_crop_size": {"type": "choice", "values": [64, 96, 128, 160]},
    "label_smoothing": {"type": "uniform", "min_value": 0.0, "max_value": 0.2},
}

# Relative forward cost (GFLOPs at 224 px, torchvision's figures) to break ties by the faster model.
GFLOPS_224 = {"tiny": 0.01, "mobilenet_v3_large": 0.22, "efficientnet_b0": 0.39, "regnet_y_800mf": 0.83,
              "resnet18": 1.81, "resnet50": 4.09, "convnext_tiny": 4.46}
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)


def setting_of(name: str) -> str:
    return AZURE_NAMES.get(name, name)


def load_space(search: str | Path) -> dict[str, dict[str, Any]]:
    """`auto` or a YAML file -> the space in its stored form ({name: {type, ...}}), every entry checked."""
    return load_search(search)[0]


def load_search(search: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """`auto` or a YAML file -> (the space, the sweep options the file sets: see `parse_sweep`)."""
    if str(search) == AUTO:
        return {name: dict(spec) for name, spec in AUTO_SPACE.items()}, {}
    import yaml  # the CLI's other commands never need it at import

    path = Path(search).expanduser()
    where = f"Search space {str(path)!r}"
    if not path.is_file():
        raise InvalidInput(f"{where} does not exist.", "pass --search auto or the path of a YAML space file.")
    try:
        loaded = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{where} is not valid YAML: {str(exc).splitlines()[0]}.", "fix the file.") from None
    return parse_sweep(loaded, where)


def parse_sweep(loaded: Any, where: str = "The search space") -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """A space, or Azure's sweep layout around one: `search_space` with `sampling_algorithm`,
    `early_termination` ({type: median_stopping | hyperband | none, evaluation_interval, delay_evaluation})
    and `limits` ({max_trials, max_concurrent_trials}) -> (the space, those as SweepSettings options, which
    a face's own options override)."""
    options: dict[str, Any] = {}
    if isinstance(loaded, dict) and "search_space" in loaded:
        _only(loaded, SWEEP_FILE_KEYS, where, "beside search_space")
        if "sampling_algorithm" in loaded:
            options["sampling"] = loaded["sampling_algorithm"]  # checked by SweepSettings
        policy = loaded.get("early_termination")
        if policy is not None:
            if not isinstance(policy, dict) or str(policy.get("type")) not in AZURE_POLICIES:
                raise InvalidInput(f"{where}: early_termination {policy!r} is not supported.",
                                   "write {type: median_stopping | hyperband | none, evaluation_interval: N, "
                                   "delay_evaluation: N} (bandit and truncation_selection are not built).")
            _only(policy, ("type", "evaluation_interval", "delay_evaluation"), where, "in early_termination")
            options["early_termination"] = AZURE_POLICIES[str(policy["type"])]
            options.update({k: v for k, v in policy.items() if k != "type"})
        limits = loaded.get("limits")
        if limits is not None:
            if not isinstance(limits, dict):
                raise InvalidInput(f"{where}: limits must be a mapping.",
                                   "write {max_trials: N, max_concurrent_trials: N}.")
            _only(limits, ("max_trials", "max_concurrent_trials"), where,
                  "in limits (the sweep's time is --time-budget)")
            options.update(limits)
    return parse_space(loaded, where), options


def _only(mapping: dict[str, Any], allowed: tuple[str, ...], where: str, place: str) -> None:
    unknown = sorted(str(key) for key in set(mapping) - set(allowed))
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(unknown)} {place}.", f"use only: {', '.join(allowed)}.")


def parse_space(loaded: Any, where: str = "The search space") -> dict[str, dict[str, Any]]:
    if isinstance(loaded, dict) and "search_space" in loaded:
        loaded = loaded["search_space"]
        if isinstance(loaded, list):
            if len(loaded) != 1:
                raise InvalidInput(f"{where} has {len(loaded)} subspaces under search_space; one is supported.",
                                   "merge them into one mapping of parameters.")
            loaded = loaded[0]
    if not isinstance(loaded, dict) or not loaded:
        raise InvalidInput(f"{where} must be a mapping of parameter names to distributions.",
                           "write lines such as 'learning_rate: uniform(0.001, 0.01)'.")
    space = {str(name): _entry(str(name), spec, where) for name, spec in loaded.items()}
    settings = [setting_of(name) for name in space]
    twice = sorted({s for s in settings if settings.count(s) > 1})
    if twice:
        raise InvalidInput(f"{where} sets {twice[0]!r} twice (under its Azure name and its own).",
                           "keep one of the two names.")
    return space


def _entry(name: str, spec: Any, where: str) -> dict[str, Any]:
    if name in UNSUPPORTED:
        raise InvalidInput(f"{where}: {name} is not supported: {UNSUPPORTED[name]}.", f"remove {name}.")
    setting = setting_of(name)
    known = set(TrainConfig.__dataclass_fields__) - NOT_SEARCHED
    if setting not in known:
        raise InvalidInput(f"{where}: unknown parameter {name!r}.",
                           f"use Azure's names ({', '.join(AZURE_NAMES)}) or a recipe setting "
                           f"({', '.join(sorted(known - set(AZURE_NAMES.values())))}).")
    if isinstance(spec, str) and (call := _CALL.match(spec)):
        kind, args = call.group(1), [_scalar(a) for a in _split(call.group(2))]
        if kind == "choice":
            spec = {"type": "choice", "values": args}
        elif len(args) != 2:
            raise InvalidInput(f"{where}: {name}: {kind}() takes two bounds, got {len(args)}.",
                               f"write {kind}(low, high).")
        else:
            spec = {"type": kind, "min_value": args[0], "max_value": args[1]}
    if not isinstance(spec, dict):
        spec = {"type": "choice", "values": [spec]}  # a plain value: fixed
    kind = spec.get("type")
    if kind not in KINDS:
        raise InvalidInput(f"{where}: {name}: distribution {kind!r} is not supported.",
                           "use choice(...), uniform(low, high) or loguniform(low, high).")
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise InvalidInput(f"{where}: {name}: choice needs at least one value.", "write choice(a, b, ...).")
        for value in values:
            _check_value(name, value, where)
        return {"type": "choice", "values": values}
    low, high = spec.get("min_value"), spec.get("max_value")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise InvalidInput(f"{where}: {name}: {kind} needs numeric min_value and max_value, got {low!r} and "
                           f"{high!r}.", f"write {kind}(low, high) with two numbers.")
    if not low < high:
        raise InvalidInput(f"{where}: {name}: {kind}({low}, {high}) is empty: the low bound must be below the "
                           "high one.", f"write {kind}(low, high) with low < high.")
    if kind == "loguniform" and max(abs(low), abs(high)) > 700:
        raise InvalidInput(f"{where}: {name}: loguniform({low}, {high}) takes natural logs of the values (as Azure's "
                           "does), and these are out of range.", f"write loguniform(ln(low), ln(high)), e.g. "
                           f"loguniform({math.log(1e-4):.2f}, {math.log(1e-2):.2f}) for 1e-4 to 1e-2.")
    ends = (math.exp(low), math.exp(high)) if kind == "loguniform" else (low, high)
    for end in ends:
        _check_value(name, _typed(setting, end), where)
    return {"type": kind, "min_value": float(low), "max_value": float(high)}


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")] if text.strip() else []


def _scalar(text: str) -> Any:
    text = text.strip().strip("'\"")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return {"true": True, "false": False}.get(text.lower(), text)


def integer_setting(setting: str) -> bool:
    return setting in ("epochs", "batch_size", "image_size", "early_stopping_patience", "head_epochs",
                       "bn_recalibration_images", "seed")


def _typed(setting: str, value: Any) -> Any:
    return round(value) if integer_setting(setting) and isinstance(value, float) else value


def _check_value(name: str, value: Any, where: str) -> None:
    setting = setting_of(name)
    if setting == "class_weights" and name == "weighted_loss":
        if value not in WEIGHTED_LOSS:
            raise InvalidInput(f"{where}: weighted_loss {value!r} is not valid.", "use 0, 1 or 2, as Azure does.")
        value = WEIGHTED_LOSS[value]
    if setting == "image_size" and isinstance(value, int | float) and value < MIN_IMAGE_SIZE:
        raise InvalidInput(f"{where}: {name} {value} is below the search's floor of {MIN_IMAGE_SIZE} px.",
                           f"use {MIN_IMAGE_SIZE} px or more.")
    try:
        TrainConfig.from_dict({"data": "", setting: value})
    except InvalidInput as error:
        raise InvalidInput(f"{where}: {name} {value!r}: {error.message}", error.hint) from None
    except (TypeError, ValueError):
        raise InvalidInput(f"{where}: {name} {value!r} is not a value of the right type.",
                           "give a number or a name as the recipe takes it.") from None


def grid_of(space: dict[str, dict[str, Any]]) -> dict[str, list[Any]]:
    """The space as a grid (grid sampling: choices only, as Azure's grid)."""
    ranged = [name for name, spec in space.items() if spec["type"] != "choice"]
    if ranged:
        raise InvalidInput(f"Grid sampling takes choice(...) only; {', '.join(ranged)} "
                           f"{'is a range' if len(ranged) == 1 else 'are ranges'}.",
                           "use --sampling random or bayesian, or write those parameters as choice(...).")
    return {name: list(spec["values"]) for name, spec in space.items()}


def recipe_settings(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled values (by the space's names) -> recipe settings."""
    settings = {}
    for name, value in params.items():
        setting = setting_of(name)
        if name == "weighted_loss":
            value = WEIGHTED_LOSS[value]
        settings[setting] = _typed(setting, value)
    return settings


def starting_point(space: dict[str, dict[str, Any]], recipe: TrainConfig) -> dict[str, Any] | None:
    """The base recipe's own values, when every one that is set lies in the space: the first trial, so that a
    sweep starts from the default recipe (or the user's) and only keeps what beats it. Settings the recipe
    leaves to the data (image and batch size) are left out: the sampler draws them."""
    point = {}
    reverse = {v: k for k, v in WEIGHTED_LOSS.items()}
    for name, spec in space.items():
        value = getattr(recipe, setting_of(name))
        if value is None:
            continue
        if name == "weighted_loss":
            value = reverse.get(value)
        if spec["type"] == "choice":
            if value not in spec["values"]:
                return None
        else:
            low, high = spec["min_value"], spec["max_value"]
            if not isinstance(value, int | float) or value <= 0 and spec["type"] == "loguniform":
                return None
            inside = math.log(value) if spec["type"] == "loguniform" else value
            if not low <= inside <= high:
                return None
        point[name] = value
    return point


def model_cost(architecture: str, image_size: int | None) -> float:
    """A model's relative forward cost: its GFLOPs at 224 px scaled by the image's area."""
    return GFLOPS_224.get(architecture, 5.0) * ((image_size or 224) / 224) ** 2


def rank_key(accuracy: float | None, architecture: str, image_size: int | None) -> tuple[float, float]:
    """Sort key of a finished trial, best first: validation accuracy, then the faster model."""
    return (-(accuracy if accuracy is not None else -1.0), model_cost(architecture, image_size))


SAMPLINGS = ("random", "grid", "bayesian")
EARLY_TERMINATIONS = ("none", "median", "hyperband")


@dataclass(frozen=True)
class SweepSettings:
    """What a sweep's parent run holds (`runs.sweep`): the space and how it is searched.

    `evaluation_interval` and `delay_evaluation` mean what they mean in Azure's early termination
    policies: the policy is applied every `evaluation_interval` epochs, not before epoch `delay_evaluation`.
    """

    space: dict[str, dict[str, Any]]
    search: str = AUTO  # where the space came from: auto, or the file's name
    max_trials: int = 10
    max_concurrent_trials: int = 1
    sampling: str = "bayesian"
    early_termination: str = "median"
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        names.positive_int(self.max_trials, "max_trials", maximum=1000)
        names.positive_int(self.max_concurrent_trials, "max_concurrent_trials", maximum=64)
        names.positive_int(self.evaluation_interval, "evaluation_interval", maximum=1000)
        if isinstance(self.delay_evaluation, bool) or not isinstance(self.delay_evaluation, int) \
                or self.delay_evaluation < 0:
            raise InvalidInput(f"delay_evaluation must be a whole number >= 0, got {self.delay_evaluation!r}.",
                               "pass the number of epochs before the first evaluation of the policy (0: none).")
        if self.sampling not in SAMPLINGS:
            raise InvalidInput(f"Sampling {self.sampling!r} is not valid.", f"use {', '.join(SAMPLINGS)}.")
        if self.early_termination not in EARLY_TERMINATIONS:
            raise InvalidInput(f"Early termination {self.early_termination!r} is not valid.",
                               f"use {', '.join(EARLY_TERMINATIONS)}.")
        if self.sampling == "grid":
            grid_of(self.space)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SweepSettings:
        return cls(**values)
