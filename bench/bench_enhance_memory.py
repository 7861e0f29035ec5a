#!/usr/bin/env python3
"""Peak memory of ``enhance``: chunked on a long file vs whole-signal on a shorter one.

    python bench/bench_enhance_memory.py                    # 20-min long file, 2-min whole
    python bench/bench_enhance_memory.py --minutes 60 --fs 16000 --channels 1

Each measurement runs in a fresh process that loads the model (personalize's default "cpu"
network with random weights, unless --model is given), notes its peak resident memory
(VmHWM), enhances one file with ``ChunkedEnhancer.enhance_file`` and notes the peak again.
The difference is what the enhancement itself needed. Whole-signal processing grows linearly
with the duration, so its per-minute cost, times 60, estimates a one-hour file.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

MODEL_FS = 16000


def proc_status_mb(field: str) -> float:
    """A kB field of /proc/self/status (Linux) in MB, or NaN where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (VmHWM; getrusage where /proc is missing)."""
    peak = proc_status_mb("VmHWM")
    if peak == peak:  # not NaN
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_long_file(path: Path, minutes: float, fs: int, channels: int, block_seconds: float = 10.0) -> None:
    """Speech-like tone + noise, written block by block (the file never sits in memory)."""
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * fs)
    block = int(block_seconds * fs)
    with sf.SoundFile(str(path), "w", samplerate=fs, channels=channels, subtype="PCM_16") as f:
        for start in range(0, total, block):
            t = (start + np.arange(min(block, total - start))) / fs
            x = 0.3 * np.sin(2 * np.pi * 150 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
            x = x + 0.05 * rng.standard_normal(t.shape)
            f.write(np.repeat(x[:, None], channels, axis=1).astype(np.float32))


def build_model(folder: Path) -> Path:
    """personalize's default network (random weights) as a model dir."""
    import torch
    import yaml

    from espnet2_pse.bin.personalize_models import model_section
    from espnet2_pse.tasks.pse import PSETask

    config = {**model_section("cpu"), "use_tensorboard": False, "use_matplotlib": False}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.yaml").write_text(yaml.safe_dump(config))
    PSETask.main(cmd=["--config", str(folder / "train.yaml"), "--dry_run", "true", "--output_dir", str(folder),
                      "--train_data_path_and_name_and_type", "x,speech_mix,sound", "--train_shape_file", "x",
                      "--valid_data_path_and_name_and_type", "x,speech_mix,sound", "--valid_shape_file", "x"])
    model, _ = PSETask.build_model_from_file(folder / "config.yaml", None, "cpu")
    torch.save(model.state_dict(), folder / "model.pth")
    return folder


def measure(model: str, src: str, chunk_seconds: float, overlap_seconds: float) -> dict:
    """Runs in the child process: peak RSS before and after enhancing ``src``."""
    from espnet2_pse.inference.chunked import ChunkedEnhancer
    from espnet2_pse.inference.model_loading import load_separate_speech

    enhancer = ChunkedEnhancer(load_separate_speech(model), MODEL_FS, chunk_seconds or None, overlap_seconds)
    enhancer.enhance_model_rate(np.zeros(MODEL_FS, dtype=np.float32))  # warm-up: allocator, kernels
    before = peak_rss_mb()
    # Shared library pages (torch's CUDA build maps ~0.4 GB) vs private memory, for context.
    private, shared = proc_status_mb("RssAnon"), proc_status_mb("RssFile")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = enhancer.enhance_file(src, Path(tmp) / "out.wav")
    return {"before_mb": before, "private_mb": private, "shared_mb": shared, "peak_mb": peak_rss_mb(),
            "seconds": time.perf_counter() - start,
            "audio_minutes": result.frames / result.samplerate / 60, "chunks": result.chunks}


def run_child(model: Path, src: Path, chunk_seconds: float, overlap_seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--_child", str(model), str(src), str(chunk_seconds), str(overlap_seconds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _, _, model, src, chunk, overlap = sys.argv
        print(json.dumps(measure(model, src, float(chunk), float(overlap))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=20.0, help="long file, processed in chunks")
    p.add_argument("--short_minutes", type=float, default=2.0, help="shorter file, processed whole")
    p.add_argument("--fs", type=int, default=44100, help="sample rate of the test files")
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--chunk_seconds", type=float, default=8.0)
    p.add_argument("--overlap_seconds", type=float, default=1.0)
    p.add_argument("--model", default=None, help="model reference (default: the cpu network, random weights)")
    p.add_argument("--work_dir", default=None, help="where the test files go (default: a temp dir)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else build_model(tmp / "model")
        print(f"writing a {args.minutes:g}-min and a {args.short_minutes:g}-min file "
              f"({args.fs} Hz, {args.channels} ch) ...", flush=True)
        write_long_file(tmp / "long.wav", args.minutes, args.fs, args.channels)
        write_long_file(tmp / "short.wav", args.short_minutes, args.fs, args.channels)
        chunked = run_child(model, tmp / "long.wav", args.chunk_seconds, args.overlap_seconds)
        whole = run_child(model, tmp / "short.wav", 0.0, 0.0)
    rows = [("chunked", chunked), ("whole", whole)]
    print(f"{'mode':8} {'audio min':>9} {'chunks':>6} {'RSS before':>10} {'peak RSS':>9} {'increase':>9} {'time s':>7}")
    for name, r in rows:
        print(f"{name:8} {r['audio_minutes']:9.1f} {r['chunks']:6d} {r['before_mb']:9.0f}M {r['peak_mb']:8.0f}M "
              f"{r['peak_mb'] - r['before_mb']:8.0f}M {r['seconds']:7.1f}")
    print(f"RSS before = the loaded model and libraries: {chunked['private_mb']:.0f} MB private + "
          f"{chunked['shared_mb']:.0f} MB file-backed (shared library code)")
    chunk_inc = max(chunked["peak_mb"] - chunked["before_mb"], 1.0)
    whole_inc = whole["peak_mb"] - whole["before_mb"]
    per_minute = whole_inc / whole["audio_minutes"]
    print(f"increase ratio whole({whole['audio_minutes']:.1f} min) / chunked({chunked['audio_minutes']:.1f} min): "
          f"{whole_inc / chunk_inc:.1f}x")
    print(f"one hour: whole-signal ~{per_minute * 60:.0f} MB over the model "
          f"(~{whole['before_mb'] + per_minute * 60:.0f} MB peak); chunked stays at ~{chunked['peak_mb']:.0f} MB peak "
          f"(its increase does not depend on the duration)")


if __name__ == "__main__":
    main()
