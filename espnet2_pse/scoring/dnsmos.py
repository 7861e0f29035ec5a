"""DNSMOS P.835 and personalized DNSMOS: reference-free quality scores, offline.

Both ONNX models ship in the ``speechmos`` wheel (0.0.1.1, MIT; Microsoft's DNS Challenge
models): ``dnsmos_models/sig_bak_ovr.onnx`` (DNSMOS P.835) and ``pdnsmos_models/sig_bak_ovr.onnx``
(the DNS-5 personalized track's model, trained to rate a kept interfering talker as
background: a surviving second voice lowers BAK and OVRL). Each predicts SIG (speech), BAK
(background) and OVRL (overall) on a MOS scale of about 1 to 5.

As the challenge's scoring does, the network sees 9.01-s windows at a 1-s hop, a clip shorter
than that being repeated (doubled) until it is longer, and the raw predictions are mapped through
the model's polynomial calibration (taken from ``speechmos``), then averaged over the windows.
One difference, for cost: a window takes about 0.5 s on one core, and for a clip shorter than a
window every window is a circular shift of the same looped clip (a 4-s clip gives 7 of them), so
only the first is scored (``all_windows=True`` scores them all, as speechmos does). Both models
stay loaded (speechmos reloads on every switch) and the P.808 model, not reported, is skipped.
"""

import os
from typing import Dict, Tuple

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SECONDS = 9.01
# Metric name -> (speechmos model folder, personalized calibration).
MODELS: Dict[str, Tuple[str, bool]] = {
    "dnsmos": ("dnsmos_models", False),
    "pdnsmos": ("pdnsmos_models", True),
}
COLUMNS = ("sig", "bak", "ovrl")
INSTALL_HINT = "pip install speechmos==0.0.1.1 (make -C tools installs it)"

_sessions: Dict[str, object] = {}


def _session(name: str):
    if name not in _sessions:
        try:
            import onnxruntime as ort
            import speechmos
        except ImportError as err:
            raise ImportError(f"{err}; DNSMOS needs the speechmos wheel: {INSTALL_HINT}") from None
        folder, _ = MODELS[name]
        path = os.path.join(os.path.dirname(speechmos.__file__), folder, "sig_bak_ovr.onnx")
        options = ort.SessionOptions()
        # One thread per session: scoring runs clips in parallel worker processes instead.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _sessions[name] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return _sessions[name]


def _calibrate(raw: np.ndarray, personalized: bool) -> np.ndarray:
    """(N, 3) raw SIG/BAK/OVRL -> (N, 3) MOS through speechmos' polynomials."""
    from speechmos.dnsmos import DNSMOS

    sig, bak, ovr = DNSMOS.get_polyfit_val(None, raw[:, 0], raw[:, 1], raw[:, 2], personalized)
    return np.stack([sig, bak, ovr], axis=1)


def windows(x: np.ndarray, fs: int = SAMPLE_RATE, all_windows: bool = False) -> np.ndarray:
    """(T,) clip -> (N, 9.01 s) windows at a 1-s hop, the clip doubled until long enough; a
    looped clip gives only its first window unless ``all_windows``."""
    length = int(WINDOW_SECONDS * fs)
    looped = len(x) < length
    while len(x) < length:
        x = np.concatenate([x, x])
    count = 1 if looped and not all_windows else int(np.floor(len(x) / fs) - WINDOW_SECONDS) + 1
    return np.stack([x[i * fs:i * fs + length] for i in range(count)
                     if len(x[i * fs:i * fs + length]) == length]).astype(np.float32)


def dnsmos(x: np.ndarray, fs: int, model: str = "dnsmos", all_windows: bool = False) -> Dict[str, float]:
    """SIG / BAK / OVRL of a (T,) clip at 16 kHz with ``model`` ("dnsmos" or "pdnsmos");
    ``all_windows``: every window of a looped clip, as speechmos scores it.

    Raises:
        ValueError: another rate, an empty or non-finite clip, or an unknown model.
    """
    if model not in MODELS:
        raise ValueError(f"unknown DNSMOS model {model!r}; choose from {', '.join(MODELS)}")
    if fs != SAMPLE_RATE:
        raise ValueError(f"DNSMOS needs {SAMPLE_RATE} Hz audio, got {fs} Hz")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all():
        raise ValueError(f"DNSMOS: expected a non-empty finite 1-D clip, got shape {x.shape}")
    # The models were trained on audio in [-1, 1]; a louder clip is scaled down, not clipped.
    x = x / max(1.0, float(np.abs(x).max()))
    raw = _session(model).run(None, {"input_1": windows(x, fs, all_windows)})[0]
    mos = _calibrate(np.asarray(raw, dtype=np.float64), MODELS[model][1]).mean(axis=0)
    return dict(zip(COLUMNS, (float(v) for v in mos)))
