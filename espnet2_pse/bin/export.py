#!/usr/bin/env python3
"""Export a trained model to ONNX: ``pse-export`` / ``python -m espnet2_pse.bin.export``.

Examples:
    # the whole-signal graph of a personalized model: speech (B, T) -> enhanced (B, T)
    pse-export --model me.zip --out me.onnx
    # a causal model as a frame-by-frame graph with explicit state, for 10-20 ms chunks
    pse-export --model exp/causal_stft --out me_stream.onnx --streaming

``--model`` is anything ``enhance`` accepts: a packed zip (``personalize`` or the recipe's
stage 8), a model dir, a .pth next to its config.yaml, or a Hugging Face id. Supported: the
conv and stft encoder/decoder pairs with conv_tasnet_skip (and gru_mask, whole-signal only).

After writing, the file is checked with ONNX Runtime against the PyTorch model on a 4-s
input (``--no_check`` skips it): the whole-signal graph must agree to a max abs difference of
1e-4 or an SI-SDR of 60 dB; the streaming graph is fed 16-ms chunks through
:class:`~espnet2_pse.export.streaming.StreamSession` and must give the whole signal's output
the same way. The streaming graph's algorithmic latency is printed and stored in the file's
metadata (the STFT model: one window, n_fft samples; the conv model: one kernel).

Exit status: 0 written and checked; 1 the check failed (the file is kept, for inspection);
2 usage error: the model cannot be loaded or exported (e.g. ``--streaming`` for a model
that is not causal: the message names the reason).
"""

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from espnet2_pse.inference.model_loading import ModelNotFoundError, build_separate_speech, resolve_model
from espnet2_pse.scoring.metrics import si_sdr

MAX_ABS_DIFF = 1e-4
MIN_SI_SDR_DB = 60.0
CHECK_SECONDS = 4.0
CHECK_CHUNK_MS = 16.0


def check_signal(fs: int, seconds: float = CHECK_SECONDS, seed: int = 0) -> np.ndarray:
    """A deterministic voice-like test input: harmonics under a syllable envelope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    f0 = 130.0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / fs
    voice = sum(np.sin(k * phase) / k for k in range(1, 20) if k * 130 < 0.45 * fs)
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    return (0.1 * voice * envelope + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def reference_output(model, x: np.ndarray) -> np.ndarray:
    """The ESPnet model's first output on (T,) ``x``, scaled as ``SeparateSpeech`` does."""
    speech = torch.from_numpy(x)[None]
    scale = speech.std(dim=1, keepdim=True).clamp_min(1e-8) if getattr(model, "normalize_variance", False) else None
    with torch.inference_mode():
        out = model.forward_enhance(speech / scale if scale is not None else speech, torch.tensor([x.size]))[0][0]
    return (out * scale if scale is not None else out)[0].numpy()


def compare(estimate: np.ndarray, reference: np.ndarray) -> Tuple[float, float, bool]:
    diff = float(np.abs(estimate - reference).max())
    agreement = si_sdr(reference, estimate)
    return diff, agreement, diff <= MAX_ABS_DIFF or agreement >= MIN_SI_SDR_DB


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export a trained enhancement model to ONNX (whole-signal or streaming graph).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", required=True,
                   help="packed .zip, model dir, .pth next to its config.yaml, or a Hugging Face id")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--streaming", action="store_true",
                   help="frame-by-frame graph with explicit state (causal models only)")
    p.add_argument("--fs", type=int, default=16000, help="sample rate of the model in Hz")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no_check", action="store_true", help="skip the ONNX Runtime parity check")
    p.add_argument("--num_threads", type=int, default=1, help="ONNX Runtime threads for the check")
    p.add_argument("--cache_dir", default=None, help="download cache for Hugging Face models")
    return p


def _check_whole(model, path: Path, args) -> bool:
    from espnet2_pse.export.onnx_export import OnnxEnhancer

    x = check_signal(args.fs)
    diff, agreement, ok = compare(OnnxEnhancer(path, args.num_threads)(x), reference_output(model, x))
    logging.info("check (%.0f s input): max abs diff %.2e, SI-SDR agreement %.1f dB: %s",
                 CHECK_SECONDS, diff, agreement, "ok" if ok else "FAILED")
    return ok


def _check_streaming(model, path: Path, args) -> bool:
    from espnet2_pse.export.onnx_export import ort_step, session, stream_spec
    from espnet2_pse.export.streaming import StreamSession

    x = check_signal(args.fs)
    sess = session(path, args.num_threads)
    spec = stream_spec(sess)
    stream = StreamSession(ort_step(sess, spec), spec)
    chunk = int(round(CHECK_CHUNK_MS * args.fs / 1000))
    pieces = [stream.push(x[start : start + chunk]) for start in range(0, x.size, chunk)]
    pieces.append(stream.finish())
    diff, agreement, ok = compare(np.concatenate(pieces), reference_output(model, x))
    logging.info("check (%.0f s in %g-ms chunks): max abs diff %.2e, SI-SDR agreement %.1f dB: %s",
                 CHECK_SECONDS, CHECK_CHUNK_MS, diff, agreement, "ok" if ok else "FAILED")
    return ok


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        logging.error("pse-export needs onnx and onnxruntime (%s); install them with tools/requirements.txt", err)
        return 2
    from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError
    from espnet2_pse.export.onnx_export import export_streaming, export_whole
    from espnet2_pse.export.streaming import StreamingEnhancer

    with tempfile.TemporaryDirectory(prefix="pse_model_") as unpacked:
        try:
            files = resolve_model(args.model, Path(unpacked), args.cache_dir)
            model = build_separate_speech(files, "cpu").enh_model.eval()
        except ModelNotFoundError as err:
            logging.error("%s", err)
            return 2
        except Exception as err:  # bad YAML, unknown class names, mismatched weights, ...
            logging.error("cannot load model %s: %s: %s", args.model, type(err).__name__, err)
            return 2
    try:
        fast = FastEnhancer.from_espnet(model)
        stream = StreamingEnhancer(fast, args.fs) if args.streaming else None
    except UnsupportedModelError as err:
        what = "streaming export" if args.streaming else "export"
        logging.error("model %s: %s is not possible: %s", args.model, what, err)
        return 2
    if stream is not None:
        path = export_streaming(stream, args.out, args.opset)
        spec = stream.spec
        logging.info("wrote %s: streaming graph, hop %d samples (%.1f ms), algorithmic latency %.1f ms "
                     "(%d samples at %d Hz: the %s)", path, spec.hop, 1000 * spec.hop / args.fs,
                     spec.latency_ms, spec.latency_samples, args.fs,
                     "STFT window" if fast.frontend.kind == "stft" else "conv kernel")
    else:
        path = export_whole(fast, args.out, args.fs, args.opset)
        logging.info("wrote %s: whole-signal graph speech (B, T) -> enhanced (B, T)", path)
    if args.no_check:
        return 0
    ok = _check_streaming(model, path, args) if stream is not None else _check_whole(model, path, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
