"""The ceiling of a training step: forward, backward and AdamW on tensors already in memory.

There is no data path at all here, so this is the fastest any trainer can train this model at this size
on this machine; `bench_train.py` shows how close ours gets. The variants run in one process, taking
turns round by round so that whatever else the machine does falls on all of them alike:

- fp32_nchw: float32 in PyTorch's default layout, what a plain loop runs (the reference, 1.0x);
- fp32_cl: float32 with channels_last;
- bf16_cl: bfloat16 autocast with channels_last, which `--precision auto` picks on CUDA and on CPUs with
  AMX or AVX512-BF16 (elsewhere bfloat16 is emulated; this variant says by how much that is slower);
- fp32_cl_compiled (with --compile): torch.compile of fp32_cl; its compile time is printed apart.

The last line printed is one JSON object: images/s of each variant and each one's ratio to fp32_nchw.

    python benchmarks/bench_step.py [--architecture A] [--image-size PX] [--batch-size N] [--steps N]
                                    [--rounds N] [--compile] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script


def make_step(architecture: str, classes: int, device: Any, channels_last: bool, bf16: bool,
              compile_model: bool, seed: int) -> Callable[[Any, Any], None]:
    """One training step's function for a fresh model of `architecture`, set up as the variant says."""
    import torch

    from modelbuilder.training.model import build_model

    torch.manual_seed(seed)
    model, _ = build_model(architecture, classes, "none", offline=True)
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    forward = torch.compile(model) if compile_model else model

    def step(x: Any, y: Any) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, args.classes, (args.batch_size,), device=device)
    inputs = {False: x, True: x.contiguous(memory_format=torch.channels_last)}
    variants = {"fp32_nchw": (False, False, False), "fp32_cl": (True, False, False), "bf16_cl": (True, True, False)}
    if args.compile:
        variants["fp32_cl_compiled"] = (True, False, True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    steps, compile_s = {}, None
    for name, (channels_last, bf16, compiled) in variants.items():
        steps[name] = make_step(args.architecture, args.classes, device, channels_last, bf16, compiled, args.seed)
        t0 = time.perf_counter()
        for _ in range(args.warmup):  # first steps allocate, pick kernels and (compiled) compile
            steps[name](inputs[channels_last], y)
        sync()
        if compiled:
            compile_s = time.perf_counter() - t0
        _common.log(f"bench_step: {name} warmed up in {time.perf_counter() - t0:.1f} s")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, (channels_last, _, _) in variants.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                steps[name](inputs[channels_last], y)
                sync()
                seconds[name].append(time.perf_counter() - t0)
        _common.log(f"bench_step: round {r + 1}/{args.rounds}: " + ", ".join(
            f"{name} {args.batch_size / statistics.median(s):.1f} img/s" for name, s in seconds.items()))
    img_s = {name: args.batch_size / statistics.median(s) for name, s in seconds.items()}
    from modelbuilder.training.engine import choose_precision

    return {"img_s": img_s, "compile_s": compile_s, "device": device.type, "threads": torch.get_num_threads(),
            "bf16_native": choose_precision("auto", device) is torch.bfloat16}  # what the trainer would pick


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architecture", default="resnet50", help="resnet50 (default), resnet18, mobilenet_v3_large, tiny")
    p.add_argument("--image-size", type=int, default=64, help="input size in px (default 64; --quick: 32)")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (default 32; --quick: 8)")
    p.add_argument("--classes", type=int, default=2, help="labels of the classifier's head (default 2)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="rounds in which the variants take turns (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first (default 2)")
    p.add_argument("--compile", action="store_true", help="add torch.compile of the channels_last float32 model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="32 px, batch 8, 1 round: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.image_size, args.batch_size, args.rounds = 32, 8, 1
    for name in ("image_size", "batch_size", "classes", "steps", "rounds", "warmup"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    r = measure(args)
    base = r["img_s"]["fp32_nchw"]
    print(f"model: {args.architecture}, {args.image_size} px, batch {args.batch_size}, {r['device']}, "
          f"{r['threads']} threads; machine: {_common.machine()}; native bfloat16: {r['bf16_native']}")
    for name, value in r["img_s"].items():
        print(f"{name:18} {value:8.2f} img/s  {value / base:5.2f}x")
    if r["compile_s"] is not None:
        print(f"compiling took {r['compile_s']:.1f} s")
    result: dict[str, Any] = {f"{name}_img_s": round(v, 3) for name, v in r["img_s"].items()}
    result.update({f"{name}_ratio": round(v / base, 3) for name, v in r["img_s"].items() if name != "fp32_nchw"})
    result.update({"compile_s": None if r["compile_s"] is None else round(r["compile_s"], 1),
                   "bf16_native": r["bf16_native"], "device": r["device"], "architecture": args.architecture,
                   "image_size": args.image_size, "batch_size": args.batch_size})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
