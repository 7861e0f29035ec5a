#!/usr/bin/env python3
"""Real voices, real noise: ``personalize`` + ``enhance`` against DeepFilterNet3 and noisereduce.

    make -C tools bench                                   # the peers (bench/requirements.txt)
    tools/venv/bin/python bench/bench_real_voice.py       # every target voice of debian_real
    tools/venv/bin/python bench/bench_real_voice.py --voices festru_ru,fillets_cs_v --work_dir bench_two
    tools/venv/bin/python bench/bench_real_voice.py --own_talkers 0.3 --zero_shot_only   # a TV in the recordings

For each target voice of the ``debian_real`` corpus (real recorded voices and sound effects
from Debian packages, built under ``<work_dir>/data`` when missing):
  1. the voice's "own recordings": ``--noisy_minutes`` of its pretrain utterances, each mixed
     with a premix_test background at U(0, 15) dB (noise never used by personalize), written as
     wav files; and ``--clean_seconds`` of its clean few-shot utterances. With ``--own_talkers
     P`` a share P of the recordings also holds a background voice (a TV: another family's
     target voice) at U(5, 20) dB below the user;
  2. the user commands, as a user runs them: ``personalize --noisy_dir`` (zero-shot, its
     defaults), then the same with ``--clean_dir`` and the same work dir (few-shot), timed;
     ``enhance`` of the voice's fixed test sets with each model (``--condition``):
     "noise": its 30 4-s test mixtures (test-bank noise at U(-5, 5) dB, from packages never
     used in training); "interferer": the same 30 target crops with one utterance of another
     voice (a validation-role voice: no model trains on it, no target shares its family) at
     U(0, 10) dB target-to-interferer ratio plus test-bank noise at U(0, 10) dB;
  3. DeepFilterNet3, noisereduce and personalize's base model alone ("generalist") on the
     same files;
  4. per file: SI-SDRi, PESQ-WB and eSTOI against the clean reference; DNSMOS P.835 and
     personalized DNSMOS (SIG/BAK/OVRL, reference-free); speaker similarity (cosine of
     pretrained GE2E embeddings, output vs clean reference). noisereduce gets the first three.
It prints one table per condition (per voice, then the mean over voices) with the differences
to DeepFilterNet3 and the personalize wall times, and writes ``<work_dir>/results.json``.
Finished steps and per-file scores are reused when rerun with the same work dir (delete a
voice's folder to redo it). Scoring runs in ``--score_jobs`` processes (DNSMOS is about 1 s per
clip and model on one core).
"""

import argparse
import json
import multiprocessing
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

from espnet2_pse.data.debian_real import target_voice_ids  # noqa: E402
from espnet2_pse.data.kaldi_dir import read_data_dir  # noqa: E402
from espnet2_pse.data.mixing import mix_at_snr  # noqa: E402
from espnet2_pse.data.runtime import derive_rng  # noqa: E402
from espnet2_pse.scoring.metrics import PERSONALIZED_METRICS, columns_for, score_utterance  # noqa: E402

FS = 16000
SYSTEMS = ("unprocessed", "noisereduce", "deepfilternet3", "generalist", "zero-shot", "few-shot")
PERSONAL = ("zero-shot", "few-shot")
# Outputs that depend on the personalize setting (--base, --personalize_args) and so go to tagged folders.
PER_SETTING = ("generalist",) + PERSONAL
# Condition -> (test dir of a voice, folder of the enhanced outputs).
CONDITIONS = {"noise": ("test", "enhanced"), "interferer": ("test_interferer", "enhanced_interferer")}
COLUMNS = columns_for(PERSONALIZED_METRICS)
# The classic spectral gate is a reference point for the signal metrics only (DNSMOS costs ~1 s a clip).
BASIC_METRICS = ("si_sdr", "pesq", "estoi")
SHOWN = (("si_sdri", "SI-SDRi", "8.2f"), ("pesq", "PESQ-WB", "8.2f"), ("estoi", "eSTOI", "6.3f"),
         ("dnsmos_ovrl", "DNSMOS", "6.2f"), ("pdnsmos_ovrl", "pDNSMOS", "7.2f"), ("spk_sim", "SpkSim", "6.3f"))
DELTAS = (("si_sdri", "dSI-SDRi", "+9.2f"), ("pesq", "dPESQ", "+6.2f"), ("estoi", "deSTOI", "+7.3f"),
          ("pdnsmos_ovrl", "dpDNSMOS", "+8.2f"))


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
    p.add_argument("--condition", choices=("noise", "interferer", "both"), default="both",
                   help="test sets: noise only, target + interfering talker + noise, or both")
    p.add_argument("--own_talkers", type=float, default=0.0,
                   help="share of the own noisy recordings with a background voice at U(5, 20) dB below the "
                   "user (its personal models are tagged 'talkers<share>')")
    p.add_argument("--score_jobs", type=int, default=2, help="scoring processes")
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
        run([sys.executable, "-m", "espnet2_pse.bin.prepare_data", "--out", str(root), "--corpus", "debian_real",
             "--interferer_test", "true"], log)


def background_voices(root: Path, voice: str, roles: dict) -> List[str]:
    """Wav paths of the background talkers of a voice's own recordings: the pretrain speech of
    the corpus's target voices of other families (never the benchmark's interferers)."""
    family = dict(target_voice_ids())
    others = [v for v in roles["target"] if v in family and family[v].prefix != family[voice].prefix]
    paths = [p for v in others for p in read_data_dir(root / "speakers" / v / "pretrain").wav.values()]
    if not paths:
        sys.exit(f"bench: --own_talkers needs target voices of another family than {voice} in {root}")
    return paths


def write_user_folders(root: Path, voice: str, out: Path, args, talkers: List[str]) -> None:
    """The voice's own noisy recordings (premix_test background; with ``talkers`` a share
    ``--own_talkers`` of them also hold one of those voices) and its few clean seconds."""
    if (out / ".done").is_file():
        return
    rng = derive_rng(args.seed, "bench_real_voice", voice)
    talker_rng = derive_rng(args.seed, "bench_real_voice", voice, "talkers")
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
        if talkers and talker_rng.uniform() < args.own_talkers:
            t, _ = sf.read(talkers[talker_rng.integers(len(talkers))], dtype="float64")
            t = np.resize(np.roll(t, -int(talker_rng.integers(len(t)))), len(s))
            x = x + (mix_at_snr(torch.from_numpy(s), torch.from_numpy(t), float(talker_rng.uniform(5.0, 20.0)))
                     .numpy() - s)
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


def personalize_and_enhance(root: Path, voice: str, vdir: Path, args, tag: str, user: Path,
                            conditions: List[str], log: Path) -> Dict[str, float]:
    """zero-shot and few-shot personalize + enhance of the test mixtures; returns wall times."""
    times_path = vdir / f"times{tag}.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    extra = shlex.split(args.personalize_args) + (["--base", args.base] if args.base else [])
    # The user is not the corpus speaker of the same voice (personalize's data root may hold it).
    common = ["--noisy_dir", str(user / "noisy"), "--work_dir", str(vdir / f"work{tag}"),
              "--user_name", f"user_{voice}"]
    steps = [("zero-shot", [])]
    if not args.zero_shot_only:
        steps.append(("few-shot", ["--clean_dir", str(user / "clean")]))
    for system, more in steps:
        model = vdir / f"{system}{tag}.zip"
        if system not in times:
            print(f"bench: {voice}: personalize {system}", flush=True)
            times[system] = run([sys.executable, "-m", "espnet2_pse.bin.personalize", *common, *more,
                                 "--out", str(model), *extra], log)
            times_path.write_text(json.dumps(times))
        for condition in conditions:
            test, enhanced = CONDITIONS[condition]
            enhance_dir(str(model), root / "speakers" / voice / test, vdir / enhanced / f"{system}{tag}", log)
    return times


def peer_outputs(test_dir: Path, out_root: Path, dfn: DeepFilterNet3) -> None:
    """DeepFilterNet3 and noisereduce outputs of the test mixtures, written once."""
    test = read_data_dir(test_dir)
    for system, fn in (("deepfilternet3", dfn), ("noisereduce", noisereduce_enhance)):
        out = out_root / system
        if (out / ".done").is_file():
            continue
        out.mkdir(parents=True, exist_ok=True)
        for key in test.keys:
            x, _ = sf.read(test.wav[key], dtype="float32")
            sf.write(str(out / f"{key}.wav"), fn(x, FS), FS, subtype="FLOAT")
        (out / ".done").write_text("")


def _score_file(job) -> Dict[str, float]:
    key, ref_path, mix_path, est_path, metrics = job
    s, _ = sf.read(ref_path, dtype="float64")
    x, _ = sf.read(mix_path, dtype="float64")
    y = None if est_path is None else sf.read(est_path, dtype="float64")[0]
    return score_utterance(s, x, y, FS, metrics=metrics, key=key)


def score_voice(root: Path, voice: str, vdir: Path, systems: List[str], tag: str, condition: str,
                pool) -> Dict[str, Dict[str, float]]:
    """Mean of every column per system; per-file scores are kept in <vdir>/scores/<condition>/."""
    test_name, enhanced = CONDITIONS[condition]
    test = read_data_dir(root / "speakers" / voice / test_name)
    means = {}
    for system in systems:
        folder = f"{system}{tag}" if system in PER_SETTING else system
        cache = vdir / "scores" / condition / f"{folder}.json"
        rows = json.loads(cache.read_text()) if cache.is_file() else {}
        if sorted(rows) != sorted(test.keys):
            metrics = BASIC_METRICS if system == "noisereduce" else PERSONALIZED_METRICS
            jobs = [(key, test.spk1[key], test.wav[key],
                     None if system == "unprocessed" else str(vdir / enhanced / folder / f"{key}.wav"), metrics)
                    for key in test.keys]
            rows = dict(zip(test.keys, pool.map(_score_file, jobs)))
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(rows))
        means[system] = {c: _mean([r[c] for r in rows.values() if c in r]) for c in COLUMNS}
    return means


def _mean(values: List[float]) -> float:
    """Mean over the files that have the metric; NaN where none has it (noisereduce's DNSMOS)."""
    return float(np.nanmean(values)) if values else float("nan")


def _cell(value: float, fmt: str) -> str:
    """A table cell, blank for a metric the system is not scored on."""
    width = int(fmt.lstrip("+").split(".")[0])
    return " " * width if np.isnan(value) else f"{value:{fmt}}"


def print_table(results: Dict[str, dict], condition: str) -> None:
    voices = list(results)
    systems = [s for s in SYSTEMS if s in results[voices[0]]["scores"][condition]]
    mean = {s: {c: float(np.mean([results[v]["scores"][condition][s][c] for v in voices])) for c in COLUMNS}
            for s in systems}
    header = f"{'voice':<22} {'system':<15} " + " ".join(
        f"{name:>{int(fmt.lstrip('+').split('.')[0])}}" for _, name, fmt in SHOWN + DELTAS)
    header += f" {'personalize s':>13}"
    print(header)
    print("-" * len(header))
    for voice in voices + ["mean"]:
        scores = mean if voice == "mean" else results[voice]["scores"][condition]
        peer = scores["deepfilternet3"]
        for system in systems:
            r = scores[system]
            times = [results[v]["times"][system] for v in ([voice] if voice != "mean" else voices)
                     if system in results[v]["times"]]
            wall = f"{np.mean(times):.0f}" if times else ""
            cells = " ".join(_cell(r[col], fmt) for col, _, fmt in SHOWN)
            deltas = " ".join(_cell(r[col] - peer[col], fmt) for col, _, fmt in DELTAS)
            print(f"{voice:<22} {system:<15} {cells} {deltas} {wall:>13}")
        print()
    print("DNSMOS / pDNSMOS: OVRL of DNSMOS P.835 and of the personalized model; SpkSim: GE2E cosine to the clean "
          "reference; d*: difference to DeepFilterNet3 on the same files; 'few-shot' wall time is the second "
          "personalize run, which reuses the zero-shot model.")


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
    conditions = list(CONDITIONS) if args.condition == "both" else [args.condition]
    missing = [v for v in voices if "interferer" in conditions and not (root / "speakers" / v / "test_interferer").is_dir()]
    if missing:
        sys.exit(f"bench: {root} has no interferer test sets ({missing[0]}); rebuild it with prepare_data "
                 "--interferer_test true, or run with --condition noise")
    dfn = DeepFilterNet3()
    from espnet2_pse.bin.personalize import DEFAULT_BASE

    base = args.base or str(DEFAULT_BASE)
    talkers = f"talkers{args.own_talkers:g}" if args.own_talkers > 0 else ""
    tag = "".join(f"_{t}" for t in (talkers, args.tag) if t)
    results = {}
    for voice in voices:  # all the training first: scoring needs no quiet machine
        vdir = work / "voices" / voice
        user = vdir / (f"user_{talkers}" if talkers else "user")
        write_user_folders(root, voice, user, args, background_voices(root, voice, roles) if talkers else [])
        for condition in conditions:
            test, enhanced = CONDITIONS[condition]
            peer_outputs(root / "speakers" / voice / test, vdir / enhanced, dfn)
            enhance_dir(base, root / "speakers" / voice / test, vdir / enhanced / f"generalist{tag}", log)
        results[voice] = {"times": personalize_and_enhance(root, voice, vdir, args, tag, user, conditions, log)}
    with multiprocessing.get_context("spawn").Pool(args.score_jobs, initializer=_quiet_worker) as pool:
        for voice in voices:
            vdir = work / "voices" / voice
            systems = [s for s in SYSTEMS if s not in PERSONAL or s in results[voice]["times"]]
            print(f"bench: {voice}: scoring", flush=True)
            results[voice]["scores"] = {c: score_voice(root, voice, vdir, systems, tag, c, pool) for c in conditions}
            (work / f"results{tag}.json").write_text(json.dumps(results, indent=1))
    label = f" [{tag[1:]}]" if tag else ""
    what = {"noise": "30 fixed 4-s test mixtures each, test-bank noise at U(-5, 5) dB",
            "interferer": "the same 30 target crops + an interfering talker at U(0, 10) dB TIR + test-bank "
                          "noise at U(0, 10) dB"}
    for condition in conditions:
        print(f"\nReal voices (debian_real){label}, {condition}: {what[condition]}; {args.noisy_minutes:g} min of own "
              f"noisy recordings{f' ({args.own_talkers:.0%} with a background voice)' if talkers else ''}, "
              f"{args.clean_seconds:g} s clean for few-shot; DeepFilterNet3 {dfn.model_version}\n")
        print_table(results, condition)


def _quiet_worker() -> None:
    # One thread per scoring process: the pool, not the BLAS, uses the cores.
    import torch as _torch

    _torch.set_num_threads(1)


if __name__ == "__main__":
    main()
