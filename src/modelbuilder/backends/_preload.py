"""Imported once by the local backend's fork server, so each worker starts with everything loaded.

A worker needs torch, torchvision, the training engine and the ONNX exporter's op library, about
10 s of imports on a small CPU. The fork server imports them once (running no tensor op, so no
thread pools exist yet) and every worker is forked from it, ready in a fraction of a second.
"""

import onnxscript.function_libs.torch_lib.ops  # noqa: F401 - the exporter's op registry, the slowest import
import torch  # noqa: F401
import torch.onnx._internal.exporter._core  # noqa: F401

import modelbuilder.backends.worker  # noqa: F401
import modelbuilder.training.engine  # noqa: F401
from modelbuilder.training.export import warm_exporter

warm_exporter()  # parses onnxscript's sources, no tensor op
