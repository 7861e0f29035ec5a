"""Export FastEnhancer / StreamingEnhancer to ONNX and run the files with ONNX Runtime.

Graphs are traced with torch's TorchScript-based exporter (``dynamo=False``), opset 17: the
graphs are plain tensor code without complex numbers (the STFT is a DFT matrix product, see
:mod:`espnet2_pse.export.stft_frontend`), and the length axes stay dynamic.

Files carry metadata (``onnx`` ``metadata_props``): ``pse_graph`` ("whole" or "streaming"),
``sample_rate``, ``min_samples`` (whole), ``latency_ms`` and ``stream_spec`` (streaming: the
JSON :class:`~espnet2_pse.export.streaming.StreamSpec` a caller needs to drive the state).

Whole-signal graph: input ``speech`` (B, T) float32 -> output ``enhanced`` (B, T).
Streaming graph: inputs ``audio`` (B, K * hop) and ``in_<state>`` for every state name,
outputs ``enhanced`` (B, K * hop) and ``out_<state>``.
"""

import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from espnet2_pse.export.fast_model import FastEnhancer
from espnet2_pse.export.streaming import Step, StreamingEnhancer, StreamSpec

OPSET = 17
PathLike = Union[str, os.PathLike]


def _export(module: torch.nn.Module, args, path: PathLike, inputs, outputs, dynamic, opset: int) -> None:
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy, and about slices it cannot fold.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), dynamo=False, opset_version=opset, input_names=inputs,
            output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True,
        )


def _add_metadata(path: PathLike, metadata: Dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def export_whole(fast: FastEnhancer, path: PathLike, sample_rate: int = 16000, opset: int = OPSET) -> Path:
    """Write the whole-signal graph of ``fast`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fast.eval()
    previous = fast.use_fft(False)  # ONNX has no complex tensors: DFT bases, not torch.stft
    try:
        example = torch.randn(1, sample_rate) * 0.1
        axes = {"speech": {0: "batch", 1: "samples"}, "enhanced": {0: "batch", 1: "samples"}}
        with torch.no_grad():
            _export(fast, (example,), path, ["speech"], ["enhanced"], axes, opset)
    finally:
        fast.use_fft(previous)
    _add_metadata(path, {"pse_graph": "whole", "sample_rate": sample_rate, "min_samples": fast.min_samples})
    return path


def export_streaming(stream: StreamingEnhancer, path: PathLike, opset: int = OPSET) -> Path:
    """Write the streaming step graph of ``stream`` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = stream.spec
    stream.eval()
    example = torch.randn(1, 2 * spec.hop) * 0.1  # two hops; any number works
    states = stream.initial_states(torch.randn(1, spec.tail) * 0.1)
    inputs = ["audio"] + [f"in_{n}" for n in spec.state_names]
    outputs = ["enhanced"] + [f"out_{n}" for n in spec.state_names]
    axes = {"audio": {0: "batch", 1: "samples"}, "enhanced": {0: "batch", 1: "samples"}}
    for name, shape in zip(spec.state_names, spec.state_shapes):
        if -1 in shape:
            axes[f"in_{name}"] = axes[f"out_{name}"] = {shape.index(-1): "batch"}
    with torch.no_grad():
        _export(stream, (example, *states), path, inputs, outputs, axes, opset)
    _add_metadata(path, {
        "pse_graph": "streaming", "sample_rate": spec.sample_rate,
        "latency_ms": f"{spec.latency_ms:g}", "stream_spec": spec.to_json(),
    })
    return path


def session(path: PathLike, num_threads: int = 1):
    """ONNX Runtime CPU session; ``num_threads`` intra-op threads (0: ORT's choice)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # no warnings about nodes it places on the CPU
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def metadata(sess) -> Dict[str, str]:
    """The ``metadata_props`` of a session's model."""
    return dict(sess.get_modelmeta().custom_metadata_map)


class OnnxEnhancer:
    """Whole-signal ONNX graph as a callable: (B, T) or (T,) float32 numpy -> the same shape.

    Args:
        path: file written by :func:`export_whole`.
        num_threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, path: PathLike, num_threads: int = 1):
        self.session = session(path, num_threads)
        meta = metadata(self.session)
        if meta.get("pse_graph") != "whole":
            raise ValueError(f"{path}: not a whole-signal graph of pse-export (pse_graph={meta.get('pse_graph')})")
        self.min_samples = int(meta.get("min_samples", 1))
        self.sample_rate = int(meta.get("sample_rate", 16000))

    def __call__(self, speech: np.ndarray) -> np.ndarray:
        speech = np.asarray(speech, dtype=np.float32)
        batch = speech[None] if speech.ndim == 1 else speech
        if batch.shape[1] < self.min_samples:
            raise ValueError(f"too short: {batch.shape[1]} samples, at least {self.min_samples} needed")
        out = self.session.run(["enhanced"], {"speech": batch})[0]
        return out[0] if speech.ndim == 1 else out


def stream_spec(sess) -> StreamSpec:
    """The StreamSpec stored in a streaming graph."""
    meta = metadata(sess)
    if meta.get("pse_graph") != "streaming":
        raise ValueError(f"not a streaming graph of pse-export (pse_graph={meta.get('pse_graph')})")
    return StreamSpec.from_json(meta["stream_spec"])


def ort_step(sess, spec: Optional[StreamSpec] = None) -> Step:
    """A streaming :data:`~espnet2_pse.export.streaming.Step` that runs an ONNX Runtime session."""
    spec = spec or stream_spec(sess)
    inputs = [f"in_{n}" for n in spec.state_names]
    outputs = ["enhanced"] + [f"out_{n}" for n in spec.state_names]

    def step(hops: np.ndarray, states: List[np.ndarray]):
        feed = {"audio": np.ascontiguousarray(hops, dtype=np.float32), **dict(zip(inputs, states))}
        result = sess.run(outputs, feed)
        return result[0], result[1:]

    return step
