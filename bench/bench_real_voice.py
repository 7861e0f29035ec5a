#!/usr/bin/env python3
"""Real voices, real noise: ``personalize`` + ``enhance`` against DeepFilterNet3 and noisereduce.

    make -C tools bench                                   # the peers (bench/requirements.txt)
    tools/venv/bin/python bench/bench_real_voice.py       # every target voice of debian_real
    tools/venv/bin/python bench/bench_real_voice.py --voices festru_ru,fillets_cs_v --work_dir bench_two

For each target voice of the ``debian_real`` corpus (real recorded voices and sound effects
from Debian packages, built under ``<work_dir>/data`` when missing):
  1. the voice's "own recordings": ``--noisy_minutes`` of its pretrain utterances, each mixed
     with a premix_test background at U(0, 15) dB (noise never used by personalize), written as
     wav files; and ``--clean_seconds`` of its clean few-shot utterances;
  2. the user commands, as a user runs them: ``personalize --noisy_dir`` (zero-shot, its
     defaults), then the same with ``--clean_dir`` and the same work dir (few-shot), timed;
     ``enhance`` of the voice's 30 fixed test mixtures (test-bank noise at U(-5, 5) dB, from
     packages never used in training) with each model;
  3. DeepFilterNet3, noisereduce and personalize's base model alone ("generalist") on the
     same files;
  4. SI-SDRi, PESQ-WB and eSTOI of each file against its clean reference.
It prints one table (per voice, then the mean over voices) with the differences to
DeepFilterNet3 and the personalize wall times, and writes ``<work_dir>/results.json``.
Finished steps are reused when rerun with the same work dir (delete a voice's folder to redo it).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import DeepFilterNet3, noisereduce_enhance  # noqa: E402

from espnet2_pse.data.kaldi_dir import read_data_dir  # noqa: E402
from espnet2_pse.data.mixing import mix_at_snr  # noqa: E402
from espnet2_pse.data.runtime import derive_rng  # noqa: E402
from espnet2_pse.scoring.metrics import score_utterance  # noqa: E402

FS = 16000
SYSTEMS = ("unprocessed", "noisereduce", "deepfilternet3", "generalist", "zero-shot", "few-shot")
PERSONAL = ("zero-shot", "few-shot")
# Outputs that depend on the personalize setting (--base, --personalize_args) and so go to tagged folders.
PER_SETTING = ("generalist",) + PERSONAL
COLUMNS = ("si_sdri", "pesq", "estoi")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default="bench_real_voice", help="corpus, user folders, models, outputs")
    p.add_argument("--data_root", default="", help="a built debian_real corpus (default: <work_dir>/data)")
    p.add_argument("--voices", default="", help="comma-separated target voices (default: every target)")
    p.add_argument("--noisy_minutes", type=float, default=20.0, help="minutes of own noisy recordings per voice")
    p.add_argument("--clean_seconds", type=float, default=60.0, help="seconds of clean speech for few-shot")
    p.add_argument("--personalize_args", default="",
                   help="extra options for both personalize runs; write --personalize_args=--causal when the "
                   "value is a single option (argparse takes a lone '--x' for an option of its own)")
    p.add_argument("--base", default="", help="personalize's --base (default: its own default, the shipped "
                   "generalist), also scored alone as 'generalist'")
    p.add_argument("--zero_shot_only", action="store_true", help="skip the few-shot personalize run")
    p.add_argument("--tag", default="", help="name of this personalize setting: its models, outputs and results "
                   "go to tagged paths, sharing the corpus, the user folders and the peers' outputs (levers)")
    p.add_argument("--seed", type=int, default=0)
    return p


def run(cmd: List[str], log: Path) -> float:
    """Run a user command, its output to ``log``; returns the wall time in seconds."""
    start = time.perf_counter()
    with open(log, "a") as fp:
        fp.write(f"$ {shlex.join(cmd)}\n")
        fp.flush()
        proc = subprocess.run(cmd, stdout=fp, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"bench: '{' '.join(cmd[2:4])}' failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def ensure_corpus(root: Path, log: Path) -> None:
    if not (root / ".done").is_file():
        print(f"bench: building the debian_real corpus in {root} (about a minute)", flush=True)
        run([sys.executable, "-m", "espnet2_pse.bin.prepare_data", "--out", str(root), "--corpus", "debian_real"], log)


def write_user_folders(root: Path, voice: str, out: Path, args) -> None:
    """The voice's own noisy recordings (premix_test background) and its few clean seconds."""
    if (out / ".done").is_file():
        return
    rng = derive_rng(args.seed, "bench_real_voice", voice)
    premix = read_data_dir(root / "noise" / "premix_test")
    pretrain = read_data_dir(root / "speakers" / voice / "pretrain")
    total = 0.0
    for key in pretrain.keys:
        if total >= args.noisy_minutes * 60:
            break
        s, _ = sf.read(pretrain.wav[key], dtype="float64")
        n, _ = sf.read(premix.wav[premix.keys[rng.integers(len(premix.keys))]], dtype="float64")
        n = np.resize(np.roll(n, -int(rng.integers(len(n)))), len(s))
        x = mix_at_snr(torch.from_numpy(s), torch.from_numpy(n), float(rng.uniform(0.0, 15.0))).numpy()
        x = x * min(1.0, 0.99 / np.abs(x).max())
        (out / "noisy").mkdir(parents=True, exist_ok=True)
        sf.write(str(out / "noisy" / f"{key}.wav"), x, FS, subtype="PCM_16")
        total += len(s) / FS
    clean = read_data_dir(root / "speakers" / voice / "fsl_train")
    total = 0.0
    for key in clean.keys:
        if total >= args.clean_seconds:
            break
        s, _ = sf.read(clean.wav[key], dtype="float32")
        (out / "clean").mkdir(parents=True, exist_ok=True)
        sf.write(str(out / "clean" / f"{key}.wav"), s, FS, subtype="PCM_16")
        total += len(s) / FS
    (out / ".done").write_text("")


def enhance_dir(model: str, test_dir: Path, out: Path, log: Path) -> None:
    if not (out / ".done").is_file():
        run([sys.executable, "-m", "espnet2_pse.bin.enhance", "--model", model, str(test_dir / "wav.scp"),
             "--out_dir", str(out)], log)
        (out / ".done").write_text("")


def personalize_and_enhance(root: Path, voice: str, vdir: Path, args, tag: str, log: Path) -> Dict[str, float]:
    """zero-shot and few-shot personalize + enhance of the test mixtures; returns wall times."""
    times_path = vdir / f"times{tag}.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    test_dir = root / "speakers" / voice / "test"
    extra = shlex.split(args.personalize_args) + (["--base", args.base] if args.base else [])
    # The user is not the corpus speaker of the same voice (personalize's data root may hold it).
    common = ["--noisy_dir", str(vdir / "user" / "noisy"), "--work_dir", str(vdir / f"work{tag}"),
              "--user_name", f"user_{voice}"]
    steps = [("zero-shot", [])]
    if not args.zero_shot_only:
        steps.append(("few-shot", ["--clean_dir", str(vdir / "user" / "clean")]))
    for system, more in steps:
        model = vdir / f"{system}{tag}.zip"
        if system not in times:
            print(f"bench: {voice}: personalize {system}", flush=True)
            times[system] = run([sys.executable, "-m", "espnet2_pse.bin.personalize", *common, *more,
                                 "--out", str(model), *extra], log)
            times_path.write_text(json.dumps(times))
        enhance_dir(str(model), test_dir, vdir / "enhanced" / f"{system}{tag}", log)
    return times


def peer_outputs(test_dir: Path, vdir: Path, dfn: DeepFilterNet3) -> None:
    """DeepFilterNet3 and noisereduce outputs of the test mixtures, written once."""
    test = read_data_dir(test_dir)
    for system, fn in (("deepfilternet3", dfn), ("noisereduce", noisereduce_enhance)):
        out = vdir / "enhanced" / system
        if (out / ".done").is_file():
            continue
        out.mkdir(parents=True, exist_ok=True)
        for key in test.keys:
            x, _ = sf.read(test.wav[key], dtype="float32")
            sf.write(str(out / f"{key}.wav"), fn(x, FS), FS, subtype="FLOAT")
        (out / ".done").write_text("")


def score_voice(root: Path, voice: str, vdir: Path, systems: List[str], tag: str) -> Dict[str, Dict[str, float]]:
    test = read_data_dir(root / "speakers" / voice / "test")
    rows: Dict[str, List[Dict[str, float]]] = {s: [] for s in systems}
    for key in test.keys:
        x, _ = sf.read(test.wav[key], dtype="float64")
        s, _ = sf.read(test.spk1[key], dtype="float64")
        for system in systems:
            folder = f"{system}{tag}" if system in PER_SETTING else system
            y = None if system == "unprocessed" else sf.read(str(vdir / "enhanced" / folder / f"{key}.wav"),
                                                             dtype="float64")[0]
            rows[system].append(score_utterance(s, x, y, FS, metrics=("si_sdr", "pesq", "estoi"), key=key))
    return {system: {c: float(np.nanmean([r[c] for r in rs])) for c in COLUMNS} for system, rs in rows.items()}


def print_table(results: Dict[str, dict]) -> None:
    voices = list(results)
    systems = [s for s in SYSTEMS if s in results[voices[0]]["scores"]]
    mean = {s: {c: float(np.mean([results[v]["scores"][s][c] for v in voices])) for c in COLUMNS} for s in systems}
    header = f"{'voice':<22} {'system':<15} {'SI-SDRi':>8} {'PESQ-WB':>8} {'eSTOI':>7} {'dSI-SDRi':>9} " \
             f"{'dPESQ':>6} {'deSTOI':>7} {'personalize s':>13}"
    print(header)
    print("-" * len(header))
    for voice in voices + ["mean"]:
        scores = mean if voice == "mean" else results[voice]["scores"]
        peer = scores["deepfilternet3"]
        for system in systems:
            r = scores[system]
            times = [results[v]["times"][system] for v in ([voice] if voice != "mean" else voices)
                     if system in results[v]["times"]]
            wall = f"{np.mean(times):.0f}" if times else ""
            print(f"{voice:<22} {system:<15} {r['si_sdri']:8.2f} {r['pesq']:8.2f} {r['estoi']:7.3f} "
                  f"{r['si_sdri'] - peer['si_sdri']:+9.2f} {r['pesq'] - peer['pesq']:+6.2f} "
                  f"{r['estoi'] - peer['estoi']:+7.3f} {wall:>13}")
        print()
    print("d*: difference to DeepFilterNet3 on the same files; 'few-shot' wall time is the second personalize "
          "run, which reuses the zero-shot model.")


def main() -> None:
    args = get_parser().parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    work = Path(args.work_dir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root).absolute() if args.data_root else work / "data"
    log = work / "bench.log"
    ensure_corpus(root, log)
    roles = yaml.safe_load((root / "roles.yaml").read_text())
    voices = [v for v in args.voices.split(",") if v] or [v for v in roles["target"] if v not in roles.get("user", [])]
    unknown = sorted(set(voices) - set(roles["target"]))
    if unknown:
        sys.exit(f"bench: {unknown} are not target voices of {root}; choose from {roles['target']}")
    dfn = DeepFilterNet3()
    from espnet2_pse.bin.personalize import DEFAULT_BASE

    base = args.base or str(DEFAULT_BASE)
    tag = f"_{args.tag}" if args.tag else ""
    results = {}
    for voice in voices:
        vdir = work / "voices" / voice
        test_dir = root / "speakers" / voice / "test"
        write_user_folders(root, voice, vdir / "user", args)
        peer_outputs(test_dir, vdir, dfn)
        enhance_dir(base, test_dir, vdir / "enhanced" / f"generalist{tag}", log)
        times = personalize_and_enhance(root, voice, vdir, args, tag, log)
        systems = [s for s in SYSTEMS if s not in PERSONAL or s in times]
        print(f"bench: {voice}: scoring", flush=True)
        results[voice] = {"times": times, "scores": score_voice(root, voice, vdir, systems, tag)}
        (work / f"results{tag}.json").write_text(json.dumps(results, indent=1))
    label = f" [{args.tag}]" if args.tag else ""
    print(f"\nReal voices (debian_real){label}, 30 fixed 4-s test mixtures each at U(-5, 5) dB, "
          f"{args.noisy_minutes:g} min of own noisy recordings, {args.clean_seconds:g} s clean for few-shot; "
          f"DeepFilterNet3 {dfn.model_version}\n")
    print_table(results)


if __name__ == "__main__":
    main()
