#!/usr/bin/env python3
"""Speaker verification on real voices: the pretrained GE2E teacher and the tiny students.

    tools/venv/bin/python bench/bench_spk_real.py                     # builds debian_real if needed
    tools/venv/bin/python bench/bench_spk_real.py --data_root bench_real_voice/data --students infonce
    tools/venv/bin/python bench/bench_spk_real.py --students infonce --max_epoch 30 --tag ep30   # a lever
    tools/venv/bin/python bench/bench_spk_real.py --students infonce --student_args="--model_conf noise_prob=0.8" --tag np08

Voices are those of the ``debian_real`` corpus (real recorded voices of Debian packages), split
by family so that no evaluated voice is ever trained on:
- evaluation: the families of ``--eval_families`` (default: klettres, kajongg, the corpus's
  validation voices qabcs, and the target voices' families fillets, festru, asterisk), every
  voice with >= 2 utterances, at most ``--eval_per_voice`` utterances each;
- training: every other family (hedgewars, ktuberling, tuxstamps), at most
  ``--train_per_voice`` utterances per voice, two of each (of those with >= 4) held out as the
  students' validation.
Trials: balanced same / different voice pairs of the evaluation utterances (``--trials`` per
class), clean and noisy (test-bank noise, never used in training, at U(0, 10) dB, fixed per
utterance), scored by cosine; the EER comes from ``espnet2_pse.bin.spk_eer``.

Models: the teacher, Resemblyzer's pretrained GE2E encoder (``--teacher_model_tag
resemblyzer``, offline), and four students of the same tiny encoder (256-d, the teacher's
dimension) trained with ``espnet2_pse.bin.spk_distill_train`` on the training voices with the
recipe's real-voice config (conf/tuning/train_spk_student_real.yaml: views, speed perturbation,
960 updates), differing only in the loss: ``infonce`` (contrastive KD, the config's own),
``infonce_aam`` (the same plus an AAM-softmax classifier head over the training voices),
``mse`` (regression KD) and ``aamsoftmax`` (no teacher: a speaker classifier over the training
voices, margin 0.2, scale 30). It prints EERs, the ratio to the teacher's
and each model's cost (parameters, MMAC per second of audio, % of ConvTasNet small), and writes
``<work_dir>/results.json`` (``results_<tag>.json`` with ``--tag``). Trained students and EERs
are reused when rerun.
"""

import argparse
import contextlib
import io
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch
import yaml

import espnet2_pse  # noqa: F401  (registers the separators)
from espnet2_pse.bin import spk_eer
from espnet2_pse.bin.format_data import write_shape
from espnet2_pse.data.kaldi_dir import read_table, write_data_dir
from espnet2_pse.data.runtime import derive_rng
from espnet2_pse.spk.complexity import count_parameters, macs_per_second
from espnet2_pse.spk.eer import build_trials, write_trials
from espnet2_pse.tasks.spk_distill import SpkDistillTask, kd_loss_choices

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spk import PSEModel  # noqa: E402

from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip  # noqa: E402
from espnet2_pse.spk.ge2e import GE2ETeacher  # noqa: E402

FS = 16000
RECIPE_CONF = Path(__file__).resolve().parents[1] / "egs2/pse_ssl/pse1/conf/tuning"
STUDENT_CONFIG = "train_spk_student_real.yaml"
AAM_HEAD = {"margin": 0.2, "scale": 30.0}
# Student -> how its loss differs from the config's (contrastive KD): "kd_loss" and
# "kd_loss_conf" replace the config's, "extra_conf" adds to its InfoNCE settings.
STUDENTS = {
    "infonce": {},
    "infonce_aam": {"kd_loss": "infonce_aam", "extra_conf": {**AAM_HEAD, "aam_weight": 0.5}},
    "mse": {"kd_loss": "mse", "kd_loss_conf": {}},
    "aamsoftmax": {"kd_loss": "aamsoftmax", "kd_loss_conf": AAM_HEAD},
}
EVAL_FAMILIES = "klettres,kajongg,qabcs,fillets,festru,asterisk"
CONDITIONS = ("clean", "noisy")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default="bench_spk_real", help="data dirs, students, EERs")
    p.add_argument("--data_root", default="", help="a built debian_real corpus (default: <work_dir>/data)")
    p.add_argument("--eval_families", default=EVAL_FAMILIES, help="voice families held out for the trials")
    p.add_argument("--eval_per_voice", type=int, default=20, help="utterances per evaluation voice")
    p.add_argument("--train_per_voice", type=int, default=60, help="utterances per training voice")
    p.add_argument("--trials", type=int, default=3000, help="trials per class (target, non-target)")
    p.add_argument("--students", default=",".join(STUDENTS), help=f"comma-separated, of {', '.join(STUDENTS)}")
    p.add_argument("--max_epoch", type=int, default=0, help="students' epochs (default: their config's)")
    p.add_argument("--student_args", default="", help="extra spk_distill_train options of the students, "
                   "e.g. \"--speed_perturb_factors 0.9 1.0 1.1\" (give them a --tag)")
    p.add_argument("--tag", default="", help="name of this student setting (e.g. a --max_epoch): its students "
                   "and EERs go to tagged paths, sharing the sets and the teacher's EERs")
    p.add_argument("--seed", type=int, default=0, help="seeds the students' training, and the split and "
                   "trials when <work_dir>/sets is first built (then kept: another seed retrains only)")
    return p


def family(voice: str) -> str:
    return voice.split("_")[0]


def voice_utterances(root: Path) -> Dict[str, List[Path]]:
    """Voice -> its clean utterances (sorted), for the voices with >= 2 of them."""
    speech = root / "audio" / "speech"
    if not speech.is_dir():
        sys.exit(f"bench: {speech} not found: --data_root must be a built debian_real corpus")
    voices = {d.name: sorted(d.glob("*.wav")) for d in sorted(speech.iterdir()) if d.is_dir()}
    return {v: wavs for v, wavs in voices.items() if len(wavs) >= 2}


def write_sets(root: Path, out: Path, args) -> None:
    """``train``, ``valid`` and ``eval`` data dirs and the eval ``trials``."""
    if (out / ".done").is_file():
        return
    held_out = set(args.eval_families.split(","))
    sets = {"train": ({}, {}), "valid": ({}, {}), "eval": ({}, {})}
    for voice, wavs in voice_utterances(root).items():
        rng = derive_rng(args.seed, "bench_spk_real", voice)
        order = [wavs[i] for i in rng.permutation(len(wavs))]
        if family(voice) in held_out:
            parts = {"eval": order[:args.eval_per_voice]}
        elif len(order) >= 4:
            parts = {"valid": order[:2], "train": order[2:2 + args.train_per_voice]}
        else:  # too few to spare: the students' classifier must know every validation voice
            parts = {"train": order}
        for name, paths in parts.items():
            for path in paths:
                key = f"{voice}-{path.stem}"
                sets[name][0][key] = str(path)
                sets[name][1][key] = voice
    for name, (wav, utt2spk) in sets.items():
        write_data_dir(out / name, wav, utt2spk)
        write_shape(out / name)
    trials = build_trials(sets["eval"][1], args.trials, args.seed)
    write_trials(out / "eval" / "trials", trials)
    (out / ".done").touch()


def train_student(name: str, sets: Path, noise_dir: Path, out: Path, args) -> Path:
    """Trains one student (resumes an interrupted run); returns its best checkpoint."""
    best = out / "valid.loss.best.pth"
    if best.is_file() and (out / ".done").is_file():
        return best
    out.mkdir(parents=True, exist_ok=True)
    conf = yaml.safe_load((RECIPE_CONF / STUDENT_CONFIG).read_text())
    # Written into the config: ESPnet's --kd_loss_conf merges into the file's, never clears it.
    loss = STUDENTS[name]
    conf["kd_loss"] = loss.get("kd_loss", conf["kd_loss"])
    conf["kd_loss_conf"] = {**loss.get("kd_loss_conf", conf["kd_loss_conf"]), **loss.get("extra_conf", {})}
    (out / "bench_config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    cmd = [sys.executable, "-m", "espnet2_pse.bin.spk_distill_train", "--config", str(out / "bench_config.yaml"),
           "--output_dir", str(out), "--ngpu", "0", "--resume", "true", "--seed", str(args.seed),
           "--student_conf", f"embed_dim={GE2ETeacher.embed_dim}",
           "--noise_scp", str(noise_dir / "inject_train" / "wav.scp")]
    loss_class = kd_loss_choices.get_class(conf["kd_loss"])
    if loss_class.uses_teacher:
        cmd += ["--teacher_model_tag", "resemblyzer"]
    if SpkDistillTask.has_class_head(loss_class):
        cmd += ["--spk2utt", str(sets / "train" / "spk2utt")]
    if args.max_epoch:
        cmd += ["--max_epoch", str(args.max_epoch)]
    cmd += shlex.split(args.student_args)
    for split, d in (("train", "train"), ("valid", "valid")):
        cmd += [f"--{split}_data_path_and_name_and_type", f"{sets / d}/wav.scp,speech,sound",
                f"--{split}_data_path_and_name_and_type", f"{sets / d}/utt2spk,spk_labels,text",
                f"--{split}_shape_file", f"{sets / d}/speech_shape"]
    print(f"bench: training the {name} student (log: {out / 'train.log'})", flush=True)
    start = time.perf_counter()
    with open(out / "train.log", "a") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not best.is_file():
        sys.exit(f"bench: the {name} student failed (exit {proc.returncode}); see {out / 'train.log'}")
    (out / "train_seconds").write_text(f"{time.perf_counter() - start:.0f}\n")
    (out / ".done").touch()
    return best


def eer(model_args: List[str], sets: Path, noise_dir: Path, condition: str, out: Path) -> float:
    if not out.is_file():
        cmd = model_args + ["--data_dir", str(sets / "eval"), "--trials", str(sets / "eval" / "trials"),
                            "--output_file", str(out), "--log_level", "WARNING"]
        if condition == "noisy":
            cmd += ["--noise_scp", str(noise_dir / "test" / "wav.scp"), "--snr_low", "0", "--snr_high", "10"]
        with contextlib.redirect_stdout(io.StringIO()):  # its YAML goes to the file only
            spk_eer.main(cmd)
    return float(yaml.safe_load(out.read_text())["eer"])


def costs(student_dir: Path) -> Dict[str, tuple]:
    """Model -> (parameters, MAC per second of audio)."""
    student = SpkDistillTask.build_student_from_file(student_dir / "config.yaml",
                                                     student_dir / "valid.loss.best.pth", "cpu")
    teacher = GE2ETeacher()
    pse = PSEModel(ConvTasNetSkip(512, preset="small"))
    return {
        "teacher GE2E": (count_parameters(teacher), macs_per_second(teacher, lambda x: teacher(x))),
        "student": (count_parameters(student), macs_per_second(student, student)),
        "ConvTasNet small": (count_parameters(pse), macs_per_second(pse, pse)),
    }


def main(cmd=None) -> dict:
    args = get_parser().parse_args(cmd)
    unknown = sorted(set(args.students.split(",")) - set(STUDENTS))
    if unknown:
        sys.exit(f"bench: unknown --students {unknown}; choose from {list(STUDENTS)}")
    torch.set_num_threads(2)
    work = Path(args.work_dir).absolute()
    root = Path(args.data_root).absolute() if args.data_root else work / "data"
    if not (root / ".done").is_file():
        print(f"bench: building the debian_real corpus in {root} (about a minute)", flush=True)
        subprocess.run([sys.executable, "-m", "espnet2_pse.bin.prepare_data", "--out", str(root),
                        "--corpus", "debian_real"], check=True)
    sets = work / "sets"
    write_sets(root, sets, args)
    noise_dir = root / "noise"
    utt2spk = read_table(sets / "eval" / "utt2spk")
    train_voices = set(read_table(sets / "train" / "utt2spk").values())
    seconds = sum(float(d) for d in read_table(sets / "eval" / "utt2dur").values())
    print(f"bench: {len(set(utt2spk.values()))} evaluation voices ({len(utt2spk)} utterances, "
          f"{seconds / 60:.1f} min), {len(train_voices)} training voices", flush=True)

    models = {"teacher GE2E": ["--model_type", "teacher", "--model_tag", "resemblyzer"]}
    students = {}
    for name in args.students.split(","):
        label = f"{name}_{args.tag}" if args.tag else name
        students[name] = work / "students" / label
        best = train_student(name, sets, noise_dir, students[name], args)
        models[f"student {label}"] = ["--model_type", "student", "--train_config",
                                     str(students[name] / "config.yaml"), "--model_file", str(best)]
    results = {"eer": {}, "voices": {"eval": len(set(utt2spk.values())), "train": len(train_voices)}}
    for model, model_args in models.items():
        slug = model.replace(" ", "_")
        results["eer"][model] = {c: eer(model_args, sets, noise_dir, c, work / "eer" / f"{slug}_{c}.yaml")
                                 for c in CONDITIONS}
    cost = costs(next(iter(students.values()))) if students else {}
    results["cost"] = {k: {"params": p, "mmac_per_s": m / 1e6} for k, (p, m) in cost.items()}
    results["train_seconds"] = {n: float((d / "train_seconds").read_text()) for n, d in students.items()
                                if (d / "train_seconds").is_file()}
    print_table(results)
    (work / (f"results_{args.tag}.json" if args.tag else "results.json")).write_text(json.dumps(results, indent=1))
    return results


def print_table(results: dict) -> None:
    teacher = results["eer"]["teacher GE2E"]
    print(f"\n{'model':<22} {'EER clean %':>11} {'EER noisy %':>11} {'x teacher':>16}")
    for model, e in results["eer"].items():
        ratio = f"{e['clean'] / teacher['clean']:.2f} / {e['noisy'] / teacher['noisy']:.2f}"
        print(f"{model:<22} {100 * e['clean']:11.2f} {100 * e['noisy']:11.2f} {ratio:>16}")
    cost = results["cost"]
    if cost:
        print(f"\n{'model':<22} {'params':>10} {'MMAC/s':>9} {'% of ConvTasNet small':>22}")
        for model, c in cost.items():
            share = 100 * c["mmac_per_s"] / cost["ConvTasNet small"]["mmac_per_s"]
            print(f"{model:<22} {c['params']:>10,} {c['mmac_per_s']:9.1f} {share:22.2f}")
    print("\nClean and noisy (test-bank noise at U(0, 10) dB) trials over voices no model trains on; "
          "students distilled from the GE2E teacher (infonce: contrastive KD, infonce_aam: the same "
          "with an AAM classifier head, mse: regression KD) "
          "or trained alone as a speaker classifier (aamsoftmax).")


if __name__ == "__main__":
    main()
