#!/usr/bin/env python3
"""Real voices, real noise: ``personalize`` + ``enhance`` against DeepFilterNet3 and noisereduce.

    make -C tools bench                                   # the peers (bench/requirements.txt)
    tools/venv/bin/python bench/bench_real_voice.py       # every target voice of debian_real
    tools/venv/bin/python bench/bench_real_voice.py --voices festru_ru,fillets_cs_v --work_dir bench_two
    tools/venv/bin/python bench/bench_real_voice.py --own_talkers 0.3 --zero_shot_only   # a TV in the recordings
    tools/venv/bin/python bench/bench_real_voice.py --voices festru_ru --load 1   # a busy machine vs idle
    tools/venv/bin/python bench/bench_real_voice.py --no_personal --conditioned_tag fresh \
        --conditioned egs2/pse_ssl/pse1/exp/packed/conditioned_stft-model.zip   # a conditioned model alone
    tools/venv/bin/python bench/bench_real_voice.py --clean_only --conditioned none   # clean speech, no recordings

For each target voice of the ``debian_real`` corpus (real recorded voices and sound effects
from Debian packages, built under ``<work_dir>/data`` when missing):
  1. the voice's "own recordings": ``--noisy_minutes`` of its pretrain utterances, each mixed
     with a premix_test background at U(0, 15) dB (noise never used by personalize), written as
     wav files; and ``--clean_seconds`` of its clean few-shot utterances. With ``--own_talkers
     P`` a share P of the recordings also holds a background voice (a TV: another family's
     target voice) at U(5, 20) dB below the user;
  2. the user commands, as a user runs them: ``personalize --noisy_dir`` (zero-shot, its
     defaults), then the same with ``--clean_dir`` and the same work dir (few-shot), timed
     (``--clean_only``: instead, ``personalize --clean_dir`` alone on the clean seconds and on
     their first 5 s, straight from the generalist);
     ``enhance`` of the voice's fixed test sets with each model (``--condition``):
     "noise": its 30 4-s test mixtures (test-bank noise at U(-5, 5) dB, from packages never
     used in training); "interferer": the same 30 target crops with one utterance of another
     voice (a validation-role voice: no model trains on it, no target shares its family) at
     U(0, 10) dB target-to-interferer ratio plus test-bank noise at U(0, 10) dB;
  3. DeepFilterNet3, noisereduce and personalize's base model alone ("generalist") on the
     same files; and the speaker-conditioned generalist (``--conditioned``, by default the
     shipped one) with three enrollments taken from the user's folders, as a user has them:
     the first 5 s of the clean speech ("clean5"), its first 1.5 s ("short") and the first
     5 s of the noisy recordings ("noisy"), each static ("static ...": the teacher's
     embedding of the enrollment) and refined on the fly by the packed student ("refined
     ...", ``enhance --refine``, options ``--refine_args``), and each test file conditioned on
     the teacher's embedding of its own clean reference ("static oracle": the ceiling of any
     refinement);
  4. per file: SI-SDRi, PESQ-WB and eSTOI against the clean reference; DNSMOS P.835 and
     personalized DNSMOS (SIG/BAK/OVRL, reference-free); speaker similarity (cosine of
     pretrained GE2E embeddings, output vs clean reference). noisereduce gets the first three;
     the clean reference itself ("reference") gets the two DNSMOS, what an output identical
     to it would score (on recordings with their own hiss, below a denoiser that removes it).
It prints one table per condition (per voice, then the mean over voices) with the differences
to DeepFilterNet3 and the personalize wall times, and writes ``<work_dir>/results.json``.
``--load N`` runs personalize beside N busy processes (a loaded machine; its models are
tagged "load<N>") and prints its zero-shot result and wall time beside those of the idle run
of the same work dir.
Finished steps and per-file scores are reused when rerun with the same work dir (delete a
voice's folder to redo it); an output folder whose model or enhance options changed (its
``.done`` holds a digest of them: a new shipped generalist, a personal model trained again) is
made again, and scored again. Scoring runs in ``--score_jobs`` processes (DNSMOS is about 1 s per
clip and model on one core).
"""

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import soundfile as sf
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import DeepFilterNet3, noisereduce_enhance  # noqa: E402
from real_voice_scoring import (CLEAN_ONLY, CONDITIONED, CONDITIONS, FS, PERSONAL, SYSTEMS,  # noqa: E402
                                curve_rows, output_folder, score_voice, snapshots)
from real_voice_tables import print_curve, print_load_comparison, print_table  # noqa: E402
from real_voice_user import (background_voices, clean_enrollment_folder, write_enrollments,  # noqa: E402
                             write_user_folders)

from espnet2_pse.data.kaldi_dir import read_data_dir  # noqa: E402

# The shipped conditioned generalist (issue 21), the default --conditioned.
SHIPPED_CONDITIONED = Path(__file__).resolve().parents[1] / "espnet2_pse" / "pretrained" / "conditioned_stft.zip"
# enhance --refine's per-file line: "... refinement accepted A/N embedding updates ...".
_ACCEPTED = re.compile(r"refinement accepted (\d+)/(\d+) embedding updates")


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
    p.add_argument("--no_personal", action="store_true", help="skip personalize (peers and conditioned model only)")
    p.add_argument("--clean_only", action="store_true",
                   help="instead of the zero-shot and few-shot runs, personalize on clean speech alone (no noisy "
                   "recordings), straight from the generalist: --clean_seconds of it ('clean-only') and the "
                   "first 5 s ('clean-only-5s')")
    p.add_argument("--conditioned", default=str(SHIPPED_CONDITIONED),
                   help="speaker-conditioned model (packed zip with its teacher and student), or 'none'")
    p.add_argument("--conditioned_tag", default="",
                   help="name of this conditioned model: its outputs go to tagged folders")
    p.add_argument("--refine_args", default="",
                   help="extra enhance options of the refined rows, e.g. --refine_args='--refine_alpha 0.5'")
    p.add_argument("--refine_tag", default="",
                   help="name of this refinement setting (--refine_args): the refined rows go to tagged folders")
    p.add_argument("--tag", default="", help="name of this personalize setting: its models, outputs and results "
                   "go to tagged paths, sharing the corpus, the user folders and the peers' outputs (levers)")
    p.add_argument("--condition", choices=("noise", "interferer", "both"), default="both",
                   help="test sets: noise only, target + interfering talker + noise, or both")
    p.add_argument("--load", type=int, default=0,
                   help="busy processes that compete with personalize for the cores (tagged 'load<N>')")
    p.add_argument("--own_talkers", type=float, default=0.0,
                   help="share of the own noisy recordings with a background voice at U(5, 20) dB below the "
                   "user (its personal models are tagged 'talkers<share>')")
    p.add_argument("--curve_epochs", type=int, nargs="+", default=[], metavar="EPOCH",
                   help="zero-shot quality against training time: also score the model after these epochs "
                   "(personalize --snapshot_epochs; SI-SDRi, PESQ-WB, eSTOI), with the training time they took")
    p.add_argument("--fsl_curve_epochs", type=int, nargs="+", default=[], metavar="EPOCH",
                   help="the same for the few-shot step")
    p.add_argument("--signal_metrics", action="store_true",
                   help="score SI-SDR, PESQ-WB and eSTOI only (no DNSMOS/pDNSMOS/speaker similarity: quick levers)")
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


def model_stamp(model: str, options: Sequence[str]) -> str:
    """What an output folder was made with: the model reference, a digest of its files and the
    enhance options, so that a changed model (a new shipped generalist, a personal model trained
    again) is enhanced again instead of being scored from stale outputs."""
    digest, path = hashlib.sha256(), Path(model)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:  # a Hugging Face id is no file: its name stands for it
        digest.update(file.read_bytes() if file.is_file() else str(file).encode())
    return f"{model} sha256:{digest.hexdigest()} {shlex.join(options)}"


def enhance_dir(model: str, test_dir: Path, out: Path, log: Path, options: Sequence[str] = (),
                on_start: Optional[Callable[[], None]] = None) -> None:
    """Enhance ``test_dir``'s mixtures into ``out`` unless it holds them from the same model and
    options; ``on_start`` runs first when they are made (again)."""
    stamp, done = model_stamp(model, options), out / ".done"
    if done.is_file() and done.read_text() == stamp:
        return
    if on_start is not None:
        on_start()
    run([sys.executable, "-m", "espnet2_pse.bin.enhance", "--model", model, str(test_dir / "wav.scp"),
         "--out_dir", str(out), "--quiet", *options], log)
    done.write_text(stamp)


def oracle_outputs(model: str, test_dir: Path, out: Path) -> None:
    """Every test file enhanced with the model's teacher embedding of its own clean reference."""
    if (out / ".done").is_file():
        return
    from espnet2_pse.bin.enhance import use_packed_speaker_encoders
    from espnet2_pse.inference.conditioned import ConditionedEnhancer
    from espnet2_pse.inference.model_loading import build_separate_speech, resolve_model
    from espnet2_pse.spk.embedder import load_embedder

    print(f"bench: conditioned model, oracle embeddings, {test_dir}", flush=True)
    test = read_data_dir(test_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as unpacked:
        files = resolve_model(model, Path(unpacked))
        teacher = argparse.Namespace(teacher_config=None, teacher_model=None, teacher_tag=None,
                                     student_config=None, student_model=None)
        use_packed_speaker_encoders(teacher, files.extras)
        embed = load_embedder("teacher", teacher.teacher_config, teacher.teacher_model, teacher.teacher_tag)
        separate_speech = build_separate_speech(files)
        for key in test.keys:
            clean = torch.from_numpy(sf.read(test.spk1[key], dtype="float32")[0])
            enhancer = ConditionedEnhancer(separate_speech, embed(clean).numpy(), FS)
            enhancer.enhance_file(Path(test.wav[key]), out / f"{key}.wav")
    (out / ".done").write_text("")


def conditioned_outputs(root: Path, voice: str, vdir: Path, args, tags: Sequence[str], user: Path,
                        conditions: List[str]) -> Dict[str, Dict[str, float]]:
    """``enhance`` of the test sets by the conditioned model, each enrollment static and refined;
    returns the refinement's accept rate per condition and refined system (accepted updates
    over all updates, from enhance's per-file lines)."""
    enroll = write_enrollments(user)
    accept: Dict[str, Dict[str, float]] = {c: {} for c in conditions}
    for condition in conditions:
        test, enhanced = CONDITIONS[condition]
        oracle_outputs(args.conditioned, root / "speakers" / voice / test,
                       vdir / enhanced / output_folder("static oracle", "", *tags))
    for system in CONDITIONED[:-1]:
        mode, name = system.split()
        options = ["--enroll", str(enroll[name])]
        if mode == "refined":
            options += ["--refine", *shlex.split(args.refine_args)]
        for condition in conditions:
            test, enhanced = CONDITIONS[condition]
            out = vdir / enhanced / output_folder(system, "", *tags)
            out_log = out.with_name(out.name + ".log")

            def fresh_log():  # called within this iteration, so the loop variables are current
                out_log.unlink(missing_ok=True)  # the accepted-update counts are read from it
                print(f"bench: {voice}: conditioned model, {system}, {condition}", flush=True)

            enhance_dir(args.conditioned, root / "speakers" / voice / test, out, out_log, options, fresh_log)
            if mode == "refined":
                counts = [tuple(map(int, m)) for m in _ACCEPTED.findall(out_log.read_text())]
                accept[condition][system] = sum(a for a, _ in counts) / max(1, sum(n for _, n in counts))
    return accept


def personalize_and_enhance(root: Path, voice: str, vdir: Path, args, tag: str, user: Path,
                            conditions: List[str], log: Path) -> Dict[str, float]:
    """zero-shot and few-shot (or clean-only) personalize + enhance of the test mixtures; returns
    wall times."""
    times_path = vdir / f"times{tag}.json"
    times = json.loads(times_path.read_text()) if times_path.is_file() else {}
    extra = shlex.split(args.personalize_args) + (["--base", args.base] if args.base else [])
    # The user is not the corpus speaker of the same voice (personalize's data root may hold it).
    name = ["--user_name", f"user_{voice}"]
    noisy = ["--noisy_dir", str(user / "noisy"), "--work_dir", str(vdir / f"work{tag}")]
    if args.clean_only:  # each in its own work dir: a user's data without noisy recordings
        steps = [(system, ["--clean_dir", str(folder), "--work_dir", str(vdir / f"work{tag}_{system}")])
                 for system, folder in zip(CLEAN_ONLY, (user / "clean", clean_enrollment_folder(user)))]
    else:
        steps = [("zero-shot", noisy + curve_options(args.curve_epochs))]
        if not args.zero_shot_only:
            few_shot = ["--clean_dir", str(user / "clean")] + curve_options(args.fsl_curve_epochs)
            steps.append(("few-shot", noisy + few_shot))
    for system, more in steps:
        model = vdir / f"{system}{tag}.zip"
        if system not in times:
            print(f"bench: {voice}: personalize {system}", flush=True)
            with competing_load(args.load):
                times[system] = run([sys.executable, "-m", "espnet2_pse.bin.personalize", *name, *more,
                                     "--out", str(model), *extra], log)
            times_path.write_text(json.dumps(times))
        for condition in conditions:
            test, enhanced = CONDITIONS[condition]
            enhance_dir(str(model), root / "speakers" / voice / test, vdir / enhanced / f"{system}{tag}", log)
            for epoch, snapshot in snapshots(vdir / f"work{tag}", system):
                enhance_dir(str(snapshot), root / "speakers" / voice / test,
                            vdir / enhanced / f"{system}{tag}@ep{epoch}", log)
    return times


def curve_options(epochs: List[int]) -> List[str]:
    return ["--snapshot_epochs", *map(str, epochs)] if epochs else []


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
    idle_tag = "".join(f"_{t}" for t in (talkers, args.tag) if t)
    tag = idle_tag + (f"_load{args.load}" if args.load else "")
    conditioned_tag = f"_{args.conditioned_tag}" if args.conditioned_tag else ""
    refine_tag = f"_{args.refine_tag}" if args.refine_tag else ""
    if args.conditioned != "none" and not Path(args.conditioned).is_file():
        sys.exit(f"bench: --conditioned {args.conditioned}: no such packed model ('none' leaves it out)")
    results = {}
    for voice in voices:  # all the training first: scoring needs no quiet machine
        vdir = work / "voices" / voice
        user = vdir / (f"user_{talkers}" if talkers else "user")
        write_user_folders(root, voice, user, args, background_voices(root, voice, roles) if talkers else [])
        for condition in conditions:
            test, enhanced = CONDITIONS[condition]
            peer_outputs(root / "speakers" / voice / test, vdir / enhanced, dfn)
            enhance_dir(base, root / "speakers" / voice / test, vdir / enhanced / f"generalist{tag}", log)
        results[voice] = {"times": {} if args.no_personal else
                          personalize_and_enhance(root, voice, vdir, args, tag, user, conditions, log)}
        if args.conditioned != "none":
            results[voice]["accept"] = conditioned_outputs(root, voice, vdir, args, (conditioned_tag, refine_tag),
                                                           user, conditions)
    with multiprocessing.get_context("spawn").Pool(args.score_jobs, initializer=_quiet_worker) as pool:
        for voice in voices:
            vdir = work / "voices" / voice
            systems = [s for s in SYSTEMS if s not in PERSONAL + CLEAN_ONLY or s in results[voice]["times"]]
            systems += list(CONDITIONED) if args.conditioned != "none" else []
            print(f"bench: {voice}: scoring", flush=True)
            results[voice]["scores"] = {c: score_voice(root, voice, vdir, systems, (tag, conditioned_tag, refine_tag),
                                                       c, pool, args.signal_metrics) for c in conditions}
            if args.curve_epochs or args.fsl_curve_epochs:
                results[voice]["curve"] = {c: curve_rows(root, voice, vdir, tag, c, pool) for c in conditions}
            (work / f"results{tag}{conditioned_tag}{refine_tag}.json").write_text(json.dumps(results, indent=1))
    label = f" [{(tag + conditioned_tag + refine_tag)[1:]}]" if tag or conditioned_tag or refine_tag else ""
    what = {"noise": "30 fixed 4-s test mixtures each, test-bank noise at U(-5, 5) dB",
            "interferer": "the same 30 target crops + an interfering talker at U(0, 10) dB TIR + test-bank "
                          "noise at U(0, 10) dB"}
    for condition in conditions:
        print(f"\nReal voices (debian_real){label}, {condition}: {what[condition]}; {args.noisy_minutes:g} min of own "
              f"noisy recordings{f' ({args.own_talkers:.0%} with a background voice)' if talkers else ''}, "
              f"{args.clean_seconds:g} s clean for few-shot; DeepFilterNet3 {dfn.model_version}\n")
        print_table(results, condition, SYSTEMS + CONDITIONED)
        if args.curve_epochs or args.fsl_curve_epochs:
            print_curve(results, condition)
        if args.load:
            print_load_comparison(results, work / f"results{idle_tag}{conditioned_tag}{refine_tag}.json", condition,
                                  args.load)


@contextlib.contextmanager
def competing_load(processes: int):
    """``processes`` busy Python loops for the duration of the block (a loaded machine)."""
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def _quiet_worker() -> None:
    # One thread per scoring process: the pool, not the BLAS, uses the cores.
    import torch as _torch

    _torch.set_num_threads(1)


if __name__ == "__main__":
    main()
