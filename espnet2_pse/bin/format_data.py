"""Stage 2 of the recipe: format, filter and describe the data dirs for training.

``python -m espnet2_pse.bin.format_data --data_root data --dump_root dump --min_seconds 1``

For every data dir of stage 1 (generalist/{train,valid}, speakers/<spk>/{pretrain,preval,
fsl_train,fsl_val,test}) it writes ``<dump_root>/<same path>/`` with:
- the tables of the data dir, every audio file checked (16 kHz, mono, readable);
- training dirs (generalist/train, pretrain, fsl_*) without utterances shorter than
  ``--min_seconds`` (the training crop: ESPnet's chunk iterator would drop them anyway);
- ``speech_shape`` (key and number of samples): the shape file ESPnet's samplers read.
For each d in ``--fsl_durations`` it adds ``fsl_train_<d>s`` and ``fsl_val_<d>s``: the first
d seconds of clean speech and of the few-shot validation mixtures (methods.md 1.5: both
truncated to d seconds). Feature statistics are not collected: ESPnet's time-domain
enhancement models do not normalise features, so there is nothing to collect.
A dir whose output exists with a ``.done`` marker is skipped; outputs are written atomically.
"""

import argparse
import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional

from espnet2_pse.data.kaldi_dir import read_data_dir, write_data_dir
from espnet2_pse.data.splits import take_seconds

SAMPLE_RATE = 16000
TRAINING_DIRS = ("generalist/train", "pretrain", "fsl_train")
SPEAKER_DIRS = ("pretrain", "preval", "fsl_train", "fsl_val", "test")


def data_dirs(data_root: Path) -> List[Path]:
    """Relative paths of the stage-1 data dirs, in a stable order."""
    rels = [Path("generalist/train"), Path("generalist/valid")]
    for spk in sorted(p.name for p in (data_root / "speakers").iterdir() if p.is_dir()):
        rels += [Path("speakers") / spk / d for d in SPEAKER_DIRS if (data_root / "speakers" / spk / d).is_dir()]
    return [r for r in rels if (data_root / r).is_dir()]


def format_dir(src: Path, dst: Path, min_seconds: Optional[float]) -> int:
    """Copy ``src`` to ``dst`` (filtered when ``min_seconds``); returns the kept utterances."""
    data = read_data_dir(src, check_audio=True)
    keep = [k for k in data.keys if min_seconds is None or data.utt2dur[k] >= min_seconds]
    if not keep:
        raise ValueError(f"{src}: no utterance of at least {min_seconds} s: nothing to train on")
    dropped = len(data.keys) - len(keep)
    if dropped:
        logging.info("%s: dropped %d utterance(s) shorter than %s s", src, dropped, min_seconds)
    tables = {name: {k: v for k, v in t.items() if k in keep} for name, t in data.tables.items()}
    extra = {n: t for n, t in tables.items() if n not in ("wav.scp", "spk1.scp", "utt2spk", "utt2dur")}
    write_data_dir(dst, tables["wav.scp"], tables["utt2spk"], tables.get("spk1.scp"), extra)
    write_shape(dst)
    return len(keep)


def write_shape(data_dir: Path) -> None:
    data = read_data_dir(data_dir)
    lines = [f"{k} {int(round(data.utt2dur[k] * SAMPLE_RATE))}\n" for k in data.keys]
    tmp = data_dir / ".speech_shape.tmp"
    tmp.write_text("".join(lines))
    tmp.rename(data_dir / "speech_shape")


def run(data_root: Path, dump_root: Path, min_seconds: float, fsl_durations: List[float]) -> Dict[str, int]:
    counts = {}
    rels = data_dirs(data_root)
    if not rels:
        raise FileNotFoundError(f"{data_root}: no data dirs found: run stage 1 first")
    for i, rel in enumerate(rels, 1):
        dst = dump_root / rel
        if (dst / ".done").is_file():
            counts[str(rel)] = -1
            continue
        training = str(rel) in TRAINING_DIRS or rel.name in TRAINING_DIRS
        counts[str(rel)] = format_dir(data_root / rel, dst, min_seconds if training else None)
        (dst / ".done").touch()
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
    return counts


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", type=Path, required=True, help="stage-1 data root (with roles.yaml)")
    parser.add_argument("--dump_root", type=Path, required=True, help="where the formatted dirs go")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="drop shorter training utterances")
    parser.add_argument("--fsl_durations", type=float, nargs="*", default=[], help="few-shot subsets (s)")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (format_data) %(message)s")
    if not (args.data_root / "roles.yaml").is_file():
        raise SystemExit(f"format_data: {args.data_root}/roles.yaml not found: run stage 1 first")
    counts = run(args.data_root, args.dump_root, args.min_seconds, args.fsl_durations)
    skipped = sum(1 for c in counts.values() if c < 0)
    logging.info("formatted %d data dirs (%d already done) into %s", len(counts) - skipped, skipped, args.dump_root)


if __name__ == "__main__":
    main()
