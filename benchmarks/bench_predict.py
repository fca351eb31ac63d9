"""Prediction speed and fidelity: PredictionEngine (onnxruntime) against the same model in torch eager.

Model-only numbers feed both sides the very same preprocessed tensors (float32 NCHW in [0, 1]):
single-image latency (median over many images, after a warm-up) and batch-32 throughput; top-1
agreement and the largest probability difference over the validation images. End-to-end numbers
(decode + preprocess + model, from the image file) compare `PredictionEngine.predict` with Pillow +
torchvision transforms + torch eager.

Then the float model is quantized to int8 the way `modelbuilder export --quantize int8` does it, on the
validation images that command finds (the application layer's `sdk.export`: a run's own, split again
through the decoded cache, or the --data folder's), by the same function (`results.quantize.export_int8`:
a seeded sample of up to --calibration-images images, both calibrations tried, the one that agrees best
with float kept, 7-bit weights without VNNI), but
on part of the validation images only: a stratified split with --seed puts --heldout-fraction of every
label (default half) in a held-out part and the rest in the calibration part. The int8 model's
accuracy and its top-1 agreement with the float model are measured on the held-out images, which
neither training nor calibration saw (the in-sample figures on the calibration part are printed
beside them). On hymenoptera's 153 validation images that is 76 to calibrate on and 77 held out;
every run prints its own counts. Its speed is compared with the float ONNX model's, batch 1 and 32.

The model is a finished run's (`--run-dir`, or `--mlmodel` with its `--checkpoint`); without one, a
quick model is trained first with `run_training`. The last line printed is one JSON object.

    python benchmarks/bench_predict.py [--run-dir RUN] [--quick] [--data DIR] [--architecture A]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelbuilder.config import get_settings
from modelbuilder.results.files import RECIPE_FILE, ZIP_FILE

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script

SETTLE_S = 0.5


def paired_ms(sides: dict[str, Callable[[int], Any]], n: int, warmup: int = 2,
              rounds: int = 5) -> dict[str, float]:
    """Median wall time in ms of each side's fn(i) over n calls, the sides taking turns in `rounds` blocks.

    Taking turns spreads whatever else the machine is doing over both sides alike. Before each block
    the benchmark waits a moment (both runtimes keep their worker threads spinning for a while after
    running: the side measured now must not compete with the one measured before) and warms up.
    """
    times: dict[str, list[float]] = {name: [] for name in sides}
    rounds = max(1, min(rounds, n))
    for r in range(rounds):
        for name, fn in sides.items():
            time.sleep(SETTLE_S)
            for i in range(warmup):
                fn(i)
            for i in range(r * n // rounds, (r + 1) * n // rounds):
                t0 = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def train_quick_model(args: argparse.Namespace, data: _common.Dataset, work: Path) -> Path:
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    size = args.image_size or ((64 if args.quick else 224) if data.photos else 32)
    recipe = TrainConfig(data=str(data.train), validation_data=str(data.val), architecture=args.architecture,
                         weights="none", image_size=size, epochs=args.epochs or 1, seed=args.seed)
    _common.log(f"bench_predict: training a {args.architecture} model at {size} px on {data.name} first ...")
    run_training(recipe, work / "run", MemoryReporter(), cache_root=work / "cache", offline=True)
    return work / "run"


def validation_images(run: dict[str, Any], spec: Any, labels: list[str], limit: int | None) -> Any:
    """The validation images as `modelbuilder export` finds them (the application layer's `sdk.export`): a
    run's own (its validation data, or its split again, through the decoded cache), or the --data folder's."""
    from modelbuilder.sdk.export import folder_validation, run_validation
    from modelbuilder.training.recipe import TrainConfig

    if run.get("data") is not None and run.get("run_dir") is None:  # --mlmodel with --data
        images = folder_validation(run["data"].val, spec, labels)
    else:
        images = run_validation(TrainConfig.from_dict(run["recipe"]), run["cache"])
    if limit:
        pick = list(range(0, len(images.paths), max(1, len(images.paths) // limit)))[:limit]
        images = type(images)([images.paths[i] for i in pick], images.crops[pick], images.targets[pick],
                              images.labels)
    return images


def torch_model(recipe: dict[str, Any], labels: list[str], checkpoint: Path) -> Any:
    import torch

    from modelbuilder.training.model import build_model

    model, _ = build_model(recipe["architecture"], len(labels), "none", offline=True)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state.get("model", state))
    return model.float().eval()


def measure(args: argparse.Namespace, run: dict[str, Any], work: Path) -> dict[str, Any]:
    import torch
    from PIL import Image
    from torchvision import transforms

    from modelbuilder.results.quantize import predict_logits
    from modelbuilder.results.runtime import (
        PredictionEngine,
        make_session,
        read_model_package,
        softmax,
        to_model_input,
        usable_cores,
    )
    from modelbuilder.sdk import scoring

    engine = PredictionEngine.load(run["mlmodel"])
    package = read_model_package(run["mlmodel"])
    spec, labels = engine.preprocess, engine.labels
    model = torch_model(run["recipe"], labels, run["checkpoint"])
    images = validation_images(run, spec, labels, args.limit)
    paths, crops, targets = images.paths, images.crops, images.targets
    x = to_model_input(crops)  # the very tensors both sides get for the model-only numbers
    xt = torch.from_numpy(x)
    float_onnx = work / "float.onnx"
    float_onnx.write_bytes(package.onnx)
    session = make_session(float_onnx)
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    n = len(x)
    _common.log(f"bench_predict: {n} validation images at {spec.crop} px, {run['recipe']['architecture']}, "
                f"onnxruntime threads {usable_cores()} / torch threads {torch.get_num_threads()}")

    # fidelity, on every validation image
    with torch.inference_mode():
        torch_probs = np.concatenate([softmax(model(xt[s : s + 32]).numpy()) for s in range(0, n, 32)])
    ours_probs = softmax(predict_logits(session, x))
    agreement = float((ours_probs.argmax(1) == torch_probs.argmax(1)).mean())
    max_diff = float(np.abs(ours_probs - torch_probs).max())

    # model only: batch 1 latency and batch 32 throughput, on the same tensors
    reps = args.repeats
    batch = np.ascontiguousarray(np.resize(x, (32, *x.shape[1:])))
    batch_t = torch.from_numpy(batch)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xt_cl = xt.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        bs1 = paired_ms({"ours": lambda i: session.run([out], {inp: x[i % n : i % n + 1]}),
                         "torch": lambda i: model(xt[i % n : i % n + 1]),
                         "torch_cl": lambda i: cl_model(xt_cl[i % n : i % n + 1])}, reps)
        bs32 = paired_ms({"ours": lambda i: session.run([out], {inp: batch}),
                          "torch": lambda i: model(batch_t)}, max(3, reps // 8), warmup=1, rounds=3)

    # end to end: from the file to probabilities
    eval_tf = transforms.Compose([transforms.Resize(spec.resize), transforms.CenterCrop(spec.crop),
                                  transforms.ToTensor()])  # the model normalises inside, as ours does

    def torch_e2e(i: int) -> Any:
        with Image.open(paths[i % n]) as img:
            t = eval_tf(img.convert("RGB"))
        return model(t[None]).softmax(1)

    with torch.inference_mode():
        e2e = paired_ms({"ours": lambda i: engine.predict(str(paths[i % n])), "torch": torch_e2e}, reps)
    first = [str(p) for p in paths[:32]]
    e2e_batch_ours = paired_ms({"ours": lambda i: engine.predict_batch(first)}, 3, 1, 1)["ours"] / len(first)

    # batch scoring (`modelbuilder predict MODEL FOLDER --output`: decoding threads beside the model) against
    # a loop that predicts one image at a time, each over every validation file
    files = [scoring.Image(Path(p)) for p in paths]
    whole = paired_ms({"scoring": lambda i: sum(1 for _ in scoring.score(engine, files)),
                       "one_at_a_time": lambda i: [engine.predict(str(p)) for p in paths]}, 3, warmup=1, rounds=3)

    return {
        "latency_ms_bs1_ours": bs1["ours"], "latency_ms_bs1_torch": bs1["torch"],
        "latency_ms_bs1_torch_cl": bs1["torch_cl"],
        "throughput_bs32_ours": 32000 / bs32["ours"], "throughput_bs32_torch": 32000 / bs32["torch"],
        "top1_agreement": agreement, "max_abs_prob_diff": max_diff,
        "e2e_ms_bs1_ours": e2e["ours"], "e2e_ms_bs1_torch": e2e["torch"],
        "e2e_ms_batch32_ours_per_image": e2e_batch_ours,
        "scoring_images_per_s": n * 1000 / whole["scoring"],
        "one_at_a_time_images_per_s": n * 1000 / whole["one_at_a_time"],
        "images": n, "crop": spec.crop, "architecture": run["recipe"]["architecture"],
        **measure_int8(args, work, float_onnx, package, crops, targets, session, ours_probs.argmax(1)),
    }


def measure_int8(args: argparse.Namespace, work: Path, float_onnx: Path, package: Any, crops: np.ndarray,
                 targets: np.ndarray, session: Any, float_top1: np.ndarray) -> dict[str, Any]:
    """int8 as `modelbuilder export --quantize int8` makes it (the same `export_int8` call), calibrated on one
    part of the validation images; its accuracy measured on the other part, and its speed against float."""
    from modelbuilder.results.quantize import export_int8, predict_logits
    from modelbuilder.results.runtime import make_session, to_model_input

    calib, held = calibration_split(targets, args.heldout_fraction, args.seed)
    _common.log(f"bench_predict: int8 calibrated on {len(calib)} validation images, measured on {len(held)} "
                "held-out ones")
    exported = export_int8(float_onnx, work / "int8", crops[calib], targets[calib], package.labels,
                           package.preprocess, package.pipeline.get("metrics") or {},
                           package.pipeline["input"]["name"], package.pipeline["output"]["name"],
                           calibration_limit=args.calibration_images,
                           on_step=lambda text: _common.log(f"bench_predict: export_int8: {text}"))
    x = to_model_input(crops)
    n, reps = len(x), args.repeats
    batch = np.ascontiguousarray(np.resize(x, (32, *x.shape[1:])))
    int8_session = make_session(exported.onnx)
    int8_top1 = predict_logits(int8_session, x).argmax(1)
    inp, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    bs1 = paired_ms({"float": lambda i: session.run([out], {inp: x[i % n : i % n + 1]}),
                     "int8": lambda i: int8_session.run([out], {inp: x[i % n : i % n + 1]})}, reps)
    bs32 = paired_ms({"float": lambda i: session.run([out], {inp: batch}),
                      "int8": lambda i: int8_session.run([out], {inp: batch})}, max(3, reps // 8), 1, 3)
    return {
        "int8_speedup": bs32["float"] / bs32["int8"], "int8_speedup_bs1": bs1["float"] / bs1["int8"],
        "float_acc_heldout": float((float_top1[held] == targets[held]).mean()),
        "int8_acc_heldout": float((int8_top1[held] == targets[held]).mean()),
        "int8_agreement_heldout": float((int8_top1[held] == float_top1[held]).mean()),
        "float_acc_calibration": exported.float_accuracy, "int8_acc_calibration": exported.int8_accuracy,
        "int8_agreement_calibration": float((int8_top1[calib] == float_top1[calib]).mean()),
        "calibration_images": exported.calibration_images, "heldout_images": len(held),
        "int8_calibration": exported.calibration, "int8_weight_bits": 7 if exported.reduce_range else 8,
    }


def calibration_split(targets: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the images to calibrate on and of the held-out ones: the trainer's stratified, seeded split,
    `heldout_fraction` of every label held out (a label with one image only calibrates)."""
    from modelbuilder.training.data import stratified_split

    if not 0.0 < heldout_fraction < 1.0:
        raise SystemExit(f"error: --heldout-fraction {heldout_fraction} is not between 0 and 1. Fix: pass 0.5.")
    calib, held = stratified_split(targets.tolist(), heldout_fraction, seed)
    if not calib or not held:
        raise SystemExit(f"error: {len(targets)} validation images cannot be split into a calibration part and a "
                         "held-out part. Fix: use a validation set with at least two images of a label (--data).")
    return np.array(calib), np.array(held)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", help="a finished run's folder (MLModel.zip, recipe.json, checkpoints/best.pt)")
    p.add_argument("--mlmodel", help="an MLModel.zip (with --checkpoint and --data)")
    p.add_argument("--checkpoint", help="the torch weights of that model (a run's checkpoints/best.pt)")
    p.add_argument("--data", help="images to measure on (default: the run's validation images; without a run: "
                   "../shared/datasets/hymenoptera, else the digits demo set)")
    p.add_argument("--architecture", default="resnet50", help="for the quick model trained when no run is given")
    p.add_argument("--image-size", type=int, help="for that quick model (default 224 for photos; --quick: 64)")
    p.add_argument("--epochs", type=int, help="for that quick model (default 1)")
    p.add_argument("--repeats", type=int, default=50, help="timed single-image runs per side (default 50)")
    p.add_argument("--limit", type=int, help="use at most this many validation images")
    p.add_argument("--calibration-images", type=int, default=200,
                   help="most images of the calibration part to calibrate int8 on, as `modelbuilder export "
                   "--calibration-images` (default 200)")
    p.add_argument("--heldout-fraction", type=float, default=0.5,
                   help="share of every label's validation images held out from calibration to measure int8 on "
                   "(default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="for the quick model and the calibration split")
    p.add_argument("--quick", action="store_true", help="a quick model at 64 px and fewer repeats")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.quick:
        args.repeats = min(args.repeats, 20)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        data, run_dir, cache = None, None, work / "cache"
        if args.run_dir:
            run_dir = Path(args.run_dir)
            mlmodel, checkpoint = run_dir / ZIP_FILE, run_dir / "checkpoints" / "best.pt"
            recipe = json.loads((run_dir / RECIPE_FILE).read_text())
            cache = get_settings().decoded_cache  # where the run's training cached its images
        elif args.mlmodel:
            if not (args.checkpoint and args.data):
                raise SystemExit("error: --mlmodel needs --checkpoint and --data. Fix: pass both, or --run-dir.")
            mlmodel, checkpoint = Path(args.mlmodel), Path(args.checkpoint)
            import torch

            recipe = torch.load(checkpoint, map_location="cpu", weights_only=False).get("recipe") or {}
            if "architecture" not in recipe:
                recipe["architecture"] = args.architecture
            data = _common.resolve_data(args.data, work, args.seed)
        else:
            data = _common.resolve_data(args.data, work, args.seed)
            run_dir = train_quick_model(args, data, work)
            mlmodel, checkpoint = run_dir / ZIP_FILE, run_dir / "checkpoints" / "best.pt"
            recipe = json.loads((run_dir / RECIPE_FILE).read_text())
        run = {"mlmodel": mlmodel, "checkpoint": checkpoint, "recipe": recipe, "data": data, "run_dir": run_dir,
               "cache": cache}
        r = measure(args, run, work)
    report(r)


def report(r: dict[str, Any]) -> None:
    print(f"model: {r['architecture']} at {r['crop']} px, {r['images']} validation images; "
          f"machine: {_common.machine()}")
    print(f"model only, batch 1: ours {r['latency_ms_bs1_ours']:.2f} ms, "
          f"torch eager {r['latency_ms_bs1_torch']:.2f} ms "
          f"(channels_last {r['latency_ms_bs1_torch_cl']:.2f} ms); batch 32: ours {r['throughput_bs32_ours']:.1f} "
          f"img/s, torch {r['throughput_bs32_torch']:.1f} img/s")
    print(f"end to end (file -> probabilities), batch 1: ours {r['e2e_ms_bs1_ours']:.2f} ms, Pillow + torchvision "
          f"transforms + torch {r['e2e_ms_bs1_torch']:.2f} ms; ours predict_batch(32) "
          f"{r['e2e_ms_batch32_ours_per_image']:.2f} ms per image")
    print(f"batch scoring (modelbuilder predict --output) of the {r['images']} files: "
          f"{r['scoring_images_per_s']:.1f} images/s; one image at a time: {r['one_at_a_time_images_per_s']:.1f} "
          f"images/s ({r['scoring_images_per_s'] / r['one_at_a_time_images_per_s']:.2f}x)")
    print(f"fidelity: top-1 agreement {r['top1_agreement']:.4f}, max |dprob| {r['max_abs_prob_diff']:.2e}")
    print(f"int8 (as `modelbuilder export --quantize int8`: minmax {r['int8_calibration']} ranges, "
          f"{r['int8_weight_bits']}-bit weights): calibrated on {r['calibration_images']} of the {r['images']} "
          f"validation images, measured on the other {r['heldout_images']} (held out, stratified)")
    print(f"int8 on the held-out images: accuracy {r['int8_acc_heldout']:.4f} vs float {r['float_acc_heldout']:.4f} "
          f"({r['int8_acc_heldout'] - r['float_acc_heldout']:+.4f}); top-1 agreement with float "
          f"{r['int8_agreement_heldout']:.4f}. On the calibration images (in-sample): {r['int8_acc_calibration']:.4f} "
          f"vs {r['float_acc_calibration']:.4f}, agreement {r['int8_agreement_calibration']:.4f}")
    print(f"int8 speed: {r['int8_speedup']:.2f}x float onnx at batch 32, {r['int8_speedup_bs1']:.2f}x at batch 1")
    print(json.dumps({"e2e_ms_bs1_ours": round(r["e2e_ms_bs1_ours"], 3),
                      "e2e_ms_bs1_torch": round(r["e2e_ms_bs1_torch"], 3),
                      "e2e_latency_ratio_bs1": round(r["e2e_ms_bs1_ours"] / r["e2e_ms_bs1_torch"], 4),
                      "latency_ms_bs1_torch_channels_last": round(r["latency_ms_bs1_torch_cl"], 3),
                      "int8_speedup_bs1": round(r["int8_speedup_bs1"], 3),
                      "float_acc_heldout": round(r["float_acc_heldout"], 4),
                      "int8_acc_heldout": round(r["int8_acc_heldout"], 4),
                      "float_acc_calibration": round(r["float_acc_calibration"], 4),
                      "int8_acc_calibration": round(r["int8_acc_calibration"], 4),
                      "int8_agreement_calibration": round(r["int8_agreement_calibration"], 4),
                      "int8_calibration": r["int8_calibration"], "int8_weight_bits": r["int8_weight_bits"],
                      "calibration_images": r["calibration_images"], "heldout_images": r["heldout_images"],
                      "scoring_images_per_s": round(r["scoring_images_per_s"], 2),
                      "one_at_a_time_images_per_s": round(r["one_at_a_time_images_per_s"], 2),
                      "images": r["images"], "architecture": r["architecture"], "image_size": r["crop"]}))
    print(json.dumps({
        "latency_ms_bs1_ours": round(r["latency_ms_bs1_ours"], 3),
        "latency_ms_bs1_torch": round(r["latency_ms_bs1_torch"], 3),
        "latency_ratio_bs1": round(r["latency_ms_bs1_ours"] / r["latency_ms_bs1_torch"], 4),
        "throughput_ratio_bs32": round(r["throughput_bs32_ours"] / r["throughput_bs32_torch"], 4),
        "top1_agreement": r["top1_agreement"], "max_abs_prob_diff": float(f"{r['max_abs_prob_diff']:.3e}"),
        "int8_speedup": round(r["int8_speedup"], 3),
        "int8_heldout_acc_delta": round(r["int8_acc_heldout"] - r["float_acc_heldout"], 4),
        "int8_heldout_agreement": round(r["int8_agreement_heldout"], 4),
    }))


if __name__ == "__main__":
    main()
