#!/usr/bin/env python3
"""CPU inference speed: our PyTorch and ONNX Runtime paths against asteroid's ConvTasNet.

    python bench/bench_inference.py                      # all models, 5 alternating repeats
    python bench/bench_inference.py --models tiny stft --repeats 7 --json rtf.json

Everything runs in this one process on ONE thread (torch.set_num_threads(1), ONNX Runtime
intra-op 1), on a 4-s input at 16 kHz. Per model, the implementations take turns (espnet,
torch, onnx, asteroid, espnet, ...) and each reports the median of ``--repeats`` runs, so
that a background load slows all of them alike. RTF = processing time / audio duration.

Implementations:
    espnet    ESPnet's ``forward_enhance`` on the model as trained (what ``enhance`` ran before);
    torch     :class:`espnet2_pse.export.fast_model.FastEnhancer`, ``enhance``'s default path;
    onnx      its whole-signal ONNX graph (``pse-export``) in ONNX Runtime;
    asteroid  asteroid 0.7.0's ``ConvTasNet`` with the same sizes (bench/requirements-asteroid.txt);
    dfn3      DeepFilterNet3 (bench/requirements.txt) on the same 16-kHz input, its resampling to
              and from 48 kHz included: the generalist a personal model is compared with
              ("dfn3/torch" is how many times cheaper the personal model runs).

Models: the paper presets tiny/small/medium/large (encoder N=512, L=16, S=8, gLN,
conv_tasnet_skip presets: X=7, R=2, Sc=128, B/H = 8/32 ... 64/256); "cpu" (64 filters of 32
samples, stride 16, the "cpu" preset); "stft" (n_fft 512 / hop 128 hann, X=7, R=2, B=64,
H=256, Sc=64, |X|^0.3), against asteroid's ConvTasNet on its STFT filterbank with the same TCN
(the closest asteroid model: it masks real and imaginary parts instead of the magnitude).

Streaming: causal (cLN) versions of "cpu" and "stft" through the frame-by-frame graph, fed
16-ms chunks (256 samples); the median time per chunk, in PyTorch and in ONNX Runtime.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FS = 16000
PAPER = dict(layer=7, stack=2, skip_dim=128, kernel=3)
PRESETS = {"tiny": (8, 32), "small": (16, 64), "medium": (32, 128), "large": (64, 256)}
STFT_TCN = dict(layer=7, stack=2, bottleneck_dim=64, hidden_dim=256, skip_dim=64)
MODELS = ("tiny", "small", "medium", "large", "cpu", "stft")


def build_espnet(name: str, causal: bool = False):
    """The ESPnet enhancement model of a benchmark model name (random weights, eval mode)."""
    from espnet2.enh.decoder.conv_decoder import ConvDecoder
    from espnet2.enh.decoder.stft_decoder import STFTDecoder
    from espnet2.enh.encoder.conv_encoder import ConvEncoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder
    from espnet2.enh.espnet_model import ESPnetEnhancementModel

    from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip

    extra = dict(causal=True) if causal else {}
    if name == "stft":
        encoder, decoder = STFTEncoder(512, 512, 128, "hann"), STFTDecoder(512, 512, 128, "hann")
        separator = ConvTasNetSkip(257, magnitude_exponent=0.3, **STFT_TCN, **extra)
    elif name == "cpu":
        encoder, decoder = ConvEncoder(64, 32, 16), ConvDecoder(64, 32, 16)
        separator = ConvTasNetSkip(64, preset="cpu", **extra)
    else:
        encoder, decoder = ConvEncoder(512, 16, 8), ConvDecoder(512, 16, 8)
        separator = ConvTasNetSkip(512, preset=name, **extra)
    return ESPnetEnhancementModel(encoder, separator, decoder, None, None).eval()


def build_asteroid(name: str):
    """asteroid's ConvTasNet with the sizes of ``name``, or None when asteroid is missing."""
    try:
        from asteroid.models import ConvTasNet
    except ImportError:
        return None
    if name == "stft":
        sizes = dict(n_blocks=7, n_repeats=2, bn_chan=64, hid_chan=256, skip_chan=64,
                     fb_name="stft", n_filters=512, kernel_size=512, stride=128)
    elif name == "cpu":
        sizes = dict(n_blocks=7, n_repeats=1, bn_chan=32, hid_chan=64, skip_chan=64,
                     n_filters=64, kernel_size=32, stride=16)
    else:
        bottleneck, hidden = PRESETS[name]
        sizes = dict(n_blocks=7, n_repeats=2, bn_chan=bottleneck, hid_chan=hidden, skip_chan=128,
                     n_filters=512, kernel_size=16, stride=8)
    return ConvTasNet(n_src=1, sample_rate=FS, norm_type="gLN", mask_act="sigmoid", **sizes).eval()


def build_dfn3():
    """DeepFilterNet3 on one thread, or None when the bench peers are not installed."""
    try:
        from bench.peers import DeepFilterNet3

        return DeepFilterNet3()
    except ImportError:
        return None


def alternate(runs: Dict[str, Callable[[], object]], repeats: int) -> Dict[str, float]:
    """Median seconds per run of each callable, the callables taking turns."""
    for fn in runs.values():  # warm-up: allocator, kernels, ORT's first-run planning
        fn()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_model(name: str, args, tmp: Path) -> Dict[str, float]:
    from espnet2_pse.export.fast_model import FastEnhancer
    from espnet2_pse.export.onnx_export import OnnxEnhancer, export_whole

    model = build_espnet(name)
    noise = np.random.default_rng(0).standard_normal(int(args.seconds * FS)).astype(np.float32)
    x = torch.from_numpy(0.1 * noise)[None]
    lengths = torch.tensor([x.shape[1]])
    fast = FastEnhancer.from_espnet(model)
    runs = {}
    if not args.skip_espnet:
        runs["espnet"] = lambda: model.forward_enhance(x, lengths)
    runs["torch"] = lambda: fast(x)
    if not args.skip_onnx:
        onnx = OnnxEnhancer(export_whole(fast, tmp / f"{name}.onnx"), num_threads=1)
        x_np = x.numpy()
        runs["onnx"] = lambda: onnx(x_np)
    asteroid = None if args.skip_asteroid else build_asteroid(name)
    if asteroid is not None:
        runs["asteroid"] = lambda: asteroid(x)
    dfn3 = None if args.skip_dfn3 else build_dfn3()
    if dfn3 is not None:
        x_1d = x[0].numpy()
        runs["dfn3"] = lambda: dfn3(x_1d, FS)
    with torch.inference_mode():
        reference = model.forward_enhance(x, lengths)[0][0]
        error = float((fast(x) - reference).abs().max())
        seconds = alternate(runs, args.repeats)
    result = {f"{k}_rtf": v / args.seconds for k, v in seconds.items()}
    result["params"] = sum(p.numel() for p in model.parameters())
    result["torch_max_abs_diff"] = error
    if asteroid is not None:
        result["asteroid_params"] = sum(p.numel() for p in asteroid.parameters())
    return result


def bench_streaming(name: str, args, tmp: Path) -> Dict[str, float]:
    from espnet2_pse.export.fast_model import FastEnhancer
    from espnet2_pse.export.onnx_export import export_streaming, ort_step, session
    from espnet2_pse.export.streaming import StreamingEnhancer, StreamSession, torch_step

    stream = StreamingEnhancer(FastEnhancer.from_espnet(build_espnet(name, causal=True)), FS)
    steps = {"torch": torch_step(stream)}
    if not args.skip_onnx:
        sess = session(export_streaming(stream, tmp / f"{name}_stream.onnx"), num_threads=1)
        steps["onnx"] = ort_step(sess, stream.spec)
    chunk = 16 * FS // 1000
    x = np.random.default_rng(1).standard_normal(int(args.stream_seconds * FS)).astype(np.float32) * 0.1
    result = {"latency_ms": stream.spec.latency_ms}
    for label, step in steps.items():
        session_ = StreamSession(step, stream.spec)
        per_chunk = []
        for start in range(0, x.size, chunk):
            began = time.perf_counter()
            session_.push(x[start : start + chunk])
            per_chunk.append(time.perf_counter() - began)
        # The first chunks only fill the start buffer: time the steady state.
        result[f"{label}_ms_per_16ms_chunk"] = 1000 * statistics.median(per_chunk[4:])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per implementation (median)")
    parser.add_argument("--seconds", type=float, default=4.0, help="input duration for the RTF")
    parser.add_argument("--stream_seconds", type=float, default=4.0, help="audio streamed in 16-ms chunks")
    parser.add_argument("--skip_espnet", action="store_true")
    parser.add_argument("--skip_onnx", action="store_true")
    parser.add_argument("--skip_asteroid", action="store_true")
    parser.add_argument("--skip_dfn3", action="store_true")
    parser.add_argument("--skip_streaming", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    import espnet2_pse  # noqa: F401  (quiet ESPnet import)

    report: Dict[str, Dict] = {"rtf": {}, "streaming": {}}
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        print(f"RTF on {args.seconds:g} s at {FS} Hz, 1 thread, median of {args.repeats} alternating runs")
        print(f"{'model':8s} {'params':>9s} {'espnet':>8s} {'torch':>8s} {'onnx':>8s} {'asteroid':>8s}"
              f" {'ast/torch':>9s} {'ast/onnx':>8s} {'dfn3':>8s} {'dfn3/torch':>10s}")
        for name in args.models:
            r = bench_model(name, args, Path(tmp))
            report["rtf"][name] = r

            def cell(key):
                return f"{r[key]:8.4f}" if key in r else f"{'-':>8s}"

            def ratio(peer, key, width=9):
                ok = key in r and peer in r
                return f"{r[peer] / r[key]:{width - 1}.2f}x" if ok else f"{'-':>{width}s}"

            print(f"{name:8s} {r['params']:9d} {cell('espnet_rtf')} {cell('torch_rtf')} {cell('onnx_rtf')} "
                  f"{cell('asteroid_rtf')} {ratio('asteroid_rtf', 'torch_rtf')} {ratio('asteroid_rtf', 'onnx_rtf')} "
                  f"{cell('dfn3_rtf')} {ratio('dfn3_rtf', 'torch_rtf', 11)}", flush=True)
        if not args.skip_streaming:
            print("\nstreaming (causal, cLN), 16-ms chunks, 1 thread: ms per chunk (median)")
            for name in [m for m in ("cpu", "stft") if m in args.models]:
                r = bench_streaming(name, args, Path(tmp))
                report["streaming"][name] = r
                cells = "  ".join(f"{k.split('_')[0]} {v:.2f} ms" for k, v in r.items() if k.endswith("chunk"))
                print(f"{name:8s} {cells}  (algorithmic latency {r['latency_ms']:g} ms)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
