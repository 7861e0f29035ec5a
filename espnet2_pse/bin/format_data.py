"""Stage 2 of the recipe: format, filter and describe the data dirs for training.

``python -m espnet2_pse.bin.format_data --data_root data --dump_root dump --min_seconds 1``

For every data dir of stage 1 (generalist/{train,valid}, speakers/<spk>/{pretrain,preval,
fsl_train,fsl_val,test}) it writes ``<dump_root>/<same path>/`` with:
- the tables of the data dir, every audio file checked (16 kHz, mono, readable);
- training dirs (generalist/train, pretrain, fsl_*) without utterances shorter than
  ``--min_seconds`` (the training crop: ESPnet's chunk iterator would drop them anyway);
- ``speech_shape`` (key and number of samples): the shape file ESPnet's samplers read;
- generalist/train also gets ``utt2spk_index`` (each utterance's speaker as an integer), so
  that talker injection can avoid an example's own voice (pse.sh ``--generalist_talkers``);
- with ``--speed_perturb F ...`` (pse.sh ``--generalist_speed_perturb``), generalist/train also
  holds every utterance played F times as fast (Kaldi's speed perturbation, tempo and pitch
  together) as the utterance ``sp<F>-<key>`` of a new voice ``sp<F>-<speaker>``: more voices for
  the generalists, the speaker encoders and the enrollment embeddings of stage 3. The
  perturbed audio goes to ``generalist/speed_perturbed/``.
For each d in ``--fsl_durations`` it adds ``fsl_train_<d>s`` and ``fsl_val_<d>s``: the first
d seconds of clean speech and of the few-shot validation mixtures (methods.md 1.5: both
truncated to d seconds). Feature statistics are not collected: ESPnet's time-domain
enhancement models do not normalise features, so there is nothing to collect.
Speaker-encoder sets (issue 5) go to ``<dump_root>/spk/``:
- ``valid/`` clean references of the validation speakers (wav.scp, utt2spk) and
  ``valid_trials/`` (trial.scp, trial2.scp, trial_label): what the teacher (espnet2.bin.spk_train)
  and the student validate on;
- ``eval/`` held-out speakers for the EER (validation speakers' references and the corpus
  target speakers' clean pretrain + fsl_train speech; never seen by teacher or student) with
  ``trials`` (``label utt1 utt2``). The validation speakers also select the checkpoints, so
  their share of the trials is slightly optimistic.
A dir whose output exists with a ``.done`` marker is skipped; outputs are written atomically.
"""

import argparse
import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import soundfile as sf
import yaml

from espnet2_pse.data.audio import load_audio, speed_perturb
from espnet2_pse.data.kaldi_dir import read_data_dir, read_table, write_data_dir, write_speaker_index, write_table
from espnet2_pse.data.splits import take_seconds
from espnet2_pse.spk.eer import build_trials, write_espnet_trial_dir, write_trials

SAMPLE_RATE = 16000
TRAINING_DIRS = ("generalist/train", "pretrain", "fsl_train")
SPEAKER_DIRS = ("pretrain", "preval", "fsl_train", "fsl_val", "test", "test_interferer")
VALID_TRIALS = 300  # per class; the validation set is small
EVAL_TRIALS = 1000  # per class


def data_dirs(data_root: Path) -> List[Path]:
    """Relative paths of the stage-1 data dirs, in a stable order."""
    rels = [Path("generalist/train"), Path("generalist/valid")]
    for spk in sorted(p.name for p in (data_root / "speakers").iterdir() if p.is_dir()):
        rels += [Path("speakers") / spk / d for d in SPEAKER_DIRS if (data_root / "speakers" / spk / d).is_dir()]
    return [r for r in rels if (data_root / r).is_dir()]


def format_dir(src: Path, dst: Path, min_seconds: Optional[float], speed_factors: Sequence[float] = ()) -> int:
    """Copy ``src`` to ``dst`` (filtered when ``min_seconds``; generalist/train also with
    ``speed_factors``' perturbed copies); returns the utterances written."""
    data = read_data_dir(src, check_audio=True)
    keep = [k for k in data.keys if min_seconds is None or data.utt2dur[k] >= min_seconds]
    if not keep:
        raise ValueError(f"{src}: no utterance of at least {min_seconds} s: nothing to train on")
    dropped = len(data.keys) - len(keep)
    if dropped:
        logging.info("%s: dropped %d utterance(s) shorter than %s s", src, dropped, min_seconds)
    tables = {name: {k: v for k, v in t.items() if k in keep} for name, t in data.tables.items()}
    generalist_train = dst.parent.name == "generalist" and dst.name == "train"
    if generalist_train and speed_factors:
        tables = with_speed_perturbed(tables, dst.parent / "speed_perturbed", speed_factors)
    extra = {n: t for n, t in tables.items() if n not in ("wav.scp", "spk1.scp", "utt2spk", "utt2dur")}
    write_data_dir(dst, tables["wav.scp"], tables["utt2spk"], tables.get("spk1.scp"), extra)
    write_shape(dst)
    if generalist_train:
        write_speaker_index(dst)
    return len(tables["wav.scp"])


def with_speed_perturbed(tables: Dict[str, Dict[str, str]], audio_dir: Path,
                         factors: Sequence[float]) -> Dict[str, Dict[str, str]]:
    """``tables`` plus, for each factor F, every utterance played F times as fast as the key
    ``sp<F>-<key>`` of the speaker ``sp<F>-<speaker>``. Each audio file is perturbed once into
    ``audio_dir/sp<F>/`` (a file already there is kept: a rerun after an interruption)."""
    audio_tables = [name for name in ("wav.scp", "spk1.scp") if name in tables]
    copied_tables = set(tables) - set(audio_tables) - {"utt2spk", "utt2dur"}  # the same value as the source key
    out = {name: dict(table) for name, table in tables.items()}
    for factor in factors:
        prefix = f"sp{factor:g}-"
        written: Dict[str, str] = {}
        for key in tables["wav.scp"]:
            for name in audio_tables:
                source = tables[name][key]
                if source not in written:
                    stem = prefix + key if name == "wav.scp" else f"{prefix}{key}_{Path(name).stem}"
                    target = audio_dir / prefix[:-1] / f"{stem}.wav"
                    if not target.is_file():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        tmp = target.with_name(f".{target.name}.tmp.wav")
                        sf.write(tmp, speed_perturb(load_audio(source, SAMPLE_RATE), factor, SAMPLE_RATE),
                                 SAMPLE_RATE, subtype="PCM_16")
                        tmp.rename(target)
                    written[source] = str(target.absolute())
                out[name][prefix + key] = written[source]
            out["utt2spk"][prefix + key] = prefix + tables["utt2spk"][key]
            for name in copied_tables:
                out[name][prefix + key] = tables[name][key]
        logging.info("speed perturbation %g: %d utterances in %s", factor, len(tables["wav.scp"]), audio_dir)
    return out


def write_shape(data_dir: Path) -> None:
    data = read_data_dir(data_dir)
    lines = [f"{k} {int(round(data.utt2dur[k] * SAMPLE_RATE))}\n" for k in data.keys]
    tmp = data_dir / ".speech_shape.tmp"
    tmp.write_text("".join(lines))
    tmp.rename(data_dir / "speech_shape")


def write_speaker_sets(dump_root: Path) -> None:
    """The speaker-encoder validation and EER sets under ``<dump_root>/spk`` (see above)."""
    out = dump_root / "spk"
    if (out / ".done").is_file():
        return
    valid = dump_root / "generalist" / "valid"
    clean = read_table(valid / "spk1.scp")
    utt2spk = read_table(valid / "utt2spk")
    if len(set(utt2spk.values())) < 2:
        logging.warning("%s has fewer than 2 speakers: no speaker-verification trials, so no "
                        "speaker-encoder sets in %s (the recipe needs them for --spk_encoder true)", valid, out)
        return
    write_data_dir(out / "valid", clean, utt2spk)
    write_shape(out / "valid")
    trials = build_trials(utt2spk, VALID_TRIALS)
    write_espnet_trial_dir(trials, clean, out / "valid_trials")
    # ESPnet's samplers read a shape file; a trial's length is that of its first utterance.
    samples = {k: int(round(float(d) * SAMPLE_RATE)) for k, d in read_table(valid / "utt2dur").items()}
    write_table(out / "valid_trials" / "speech_shape", {f"{a}*{b}": samples[a] for a, b, _ in trials})
    write_trials(out / "valid_trials" / "trials", trials)

    held_out = dict(clean), dict(utt2spk)
    for spk in yaml.safe_load((dump_root / "roles.yaml").read_text())["target"]:
        meta = yaml.safe_load((dump_root / "speakers" / spk / "meta.yaml").read_text())
        if meta.get("premixed"):  # a user's noisy recordings: no clean speech to verify on
            continue
        for split in ("pretrain", "fsl_train"):
            held_out[0].update(read_table(dump_root / "speakers" / spk / split / "wav.scp"))
            held_out[1].update(read_table(dump_root / "speakers" / spk / split / "utt2spk"))
    write_data_dir(out / "eval", *held_out)
    write_trials(out / "eval" / "trials", build_trials(held_out[1], EVAL_TRIALS))
    (out / ".done").touch()


def check_speed_factors(factors: Sequence[float]) -> List[float]:
    factors = [float(f) for f in factors]
    if any(f <= 0 or f == 1 for f in factors) or len(set(factors)) != len(factors):
        raise ValueError(f"--speed_perturb takes distinct positive factors other than 1 (the voices as they "
                         f"are, always kept), got {factors}")
    return factors


def run(data_root: Path, dump_root: Path, min_seconds: float, fsl_durations: List[float],
        speed_factors: Sequence[float] = ()) -> Dict[str, int]:
    counts = {}
    speed_factors = check_speed_factors(speed_factors)
    rels = data_dirs(data_root)
    if not rels:
        raise FileNotFoundError(f"{data_root}: no data dirs found: run stage 1 first")
    for i, rel in enumerate(rels, 1):
        dst = dump_root / rel
        # The marker names the speed factors of generalist/train: other factors format it again.
        marker = f"speed_perturb: {speed_factors}\n" if rel == Path("generalist/train") and speed_factors else ""
        if (dst / ".done").is_file() and (dst / ".done").read_text() == marker:
            counts[str(rel)] = -1
            continue
        training = str(rel) in TRAINING_DIRS or rel.name in TRAINING_DIRS
        counts[str(rel)] = format_dir(data_root / rel, dst, min_seconds if training else None, speed_factors)
        (dst / ".done").write_text(marker)
        logging.info("[%d/%d] %s: %d utterances", i, len(rels), dst, counts[str(rel)])
    for rel in (r for r in rels if r.name in ("fsl_train", "fsl_val")):
        for d in fsl_durations:
            subset = dump_root / rel.parent / f"{rel.name}_{d:g}s"
            if not (subset / ".done").is_file():
                take_seconds(data_root / rel, subset, d)
                write_shape(subset)
                (subset / ".done").touch()
    meta_src = data_root / "speakers"
    for meta in meta_src.glob("*/meta.yaml"):
        shutil.copyfile(meta, dump_root / "speakers" / meta.parent.name / "meta.yaml")
    shutil.copyfile(data_root / "roles.yaml", dump_root / "roles.yaml")
    write_speaker_sets(dump_root)
    return counts


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", type=Path, required=True, help="stage-1 data root (with roles.yaml)")
    parser.add_argument("--dump_root", type=Path, required=True, help="where the formatted dirs go")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="drop shorter training utterances")
    parser.add_argument("--fsl_durations", type=float, nargs="*", default=[], help="few-shot subsets (s)")
    parser.add_argument("--speed_perturb", type=float, nargs="*", default=[], metavar="F",
                        help="generalist/train also holds each utterance played F times as fast, as a voice "
                        "of its own (e.g. 0.9 1.1; none by default)")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (format_data) %(message)s")
    if not (args.data_root / "roles.yaml").is_file():
        raise SystemExit(f"format_data: {args.data_root}/roles.yaml not found: run stage 1 first")
    try:
        counts = run(args.data_root, args.dump_root, args.min_seconds, args.fsl_durations, args.speed_perturb)
    except ValueError as err:
        raise SystemExit(f"format_data: {err}") from None
    skipped = sum(1 for c in counts.values() if c < 0)
    logging.info("formatted %d data dirs (%d already done) into %s", len(counts) - skipped, skipped, args.dump_root)


if __name__ == "__main__":
    main()
