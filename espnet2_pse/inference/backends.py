"""Which code runs the network inside :class:`~espnet2_pse.inference.chunked.ChunkedEnhancer`.

Backends (``--backend`` of ``enhance``):
    espnet  ESPnet's ``forward_enhance`` on the model as trained (every model; the reference).
    torch   :class:`~espnet2_pse.export.fast_model.FastEnhancer`: the same network rebuilt for
            inference (time-major, norms folded, in-place activations); equal to ``espnet``
            up to float rounding, several times faster on CPU for the conv encoder's models.
    onnx    the FastEnhancer graph exported to a temporary ONNX file, run by ONNX Runtime (CPU).
    auto    ``torch`` when the model is supported (conv/stft encoder + conv_tasnet_skip or
            gru_mask, float32, no speaker conditioning), else ``espnet``.
"""

import logging
import tempfile
from pathlib import Path
from typing import Callable, Optional

import torch

BACKENDS = ("auto", "espnet", "torch", "onnx")
# speech (1, T) float32 tensor at the model rate -> enhanced (1, T) tensor; None: ESPnet's path.
Backend = Optional[Callable[[torch.Tensor], torch.Tensor]]


def make_backend(model, name: str = "auto", device="cpu", dtype=torch.float32,
                 conditioned: bool = False, num_threads: Optional[int] = None) -> Backend:
    """The network call for backend ``name`` (None for "espnet").

    Args:
        model: ESPnet enhancement model (eval mode).
        name: one of :data:`BACKENDS`.
        device, dtype: where and in what the enhancer runs (the fast paths need float32).
        conditioned: the separator is given ``additional`` inputs (enrollment): ESPnet only.
        num_threads: ONNX Runtime threads (None: torch's current setting).

    Raises:
        ValueError: unknown name, or "torch"/"onnx" for a model they cannot run (the message
            says why).
    """
    if name not in BACKENDS:
        raise ValueError(f"backend '{name}' is not one of {BACKENDS}")
    if name == "espnet":
        return None
    from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError

    reason = None
    if conditioned:
        reason = "speaker-conditioned models take the enrollment as an extra input"
    elif dtype != torch.float32:
        reason = f"the fast paths run in float32, not {dtype}"
    elif name == "onnx" and torch.device(device).type != "cpu":
        reason = f"ONNX Runtime runs here on the CPU, not on {device}"
    fast = None
    if reason is None:
        try:
            # ChunkedEnhancer scales by the input's std itself.
            fast = FastEnhancer.from_espnet(model, normalize_variance=False).to(device)
        except UnsupportedModelError as err:
            reason = str(err)
    if fast is None:
        if name == "auto":
            logging.info("ESPnet's forward_enhance runs the model (no fast path: %s)", reason)
            return None
        raise ValueError(f"backend '{name}' cannot run this model: {reason}")
    if name == "onnx":
        return _onnx_backend(fast, num_threads)

    def run(speech: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return fast(speech)

    return run


def _onnx_backend(fast, num_threads: Optional[int]) -> Backend:
    from espnet2_pse.export.onnx_export import OnnxEnhancer, export_whole

    threads = torch.get_num_threads() if num_threads is None else num_threads
    with tempfile.TemporaryDirectory(prefix="pse_onnx_") as tmp:
        path = export_whole(fast, Path(tmp) / "model.onnx")
        enhancer = OnnxEnhancer(path, threads)  # the session holds the graph; the file may go

    def run(speech: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(enhancer(speech.float().cpu().numpy()))

    return run
