"""Score enhanced speech against clean references: per-utterance table and summary.

Usage:
    python -m espnet2_pse.bin.score --ref_scp data/test/spk1.scp --mix_scp data/test/wav.scp \
        --inf_scp exp/model/enhanced/spk1.scp --out_dir exp/model/zsl/spk/score

Without ``--inf_scp`` the mixture itself is scored: that is the "unprocessed" row of the
results tables (its SI-SDRi and SNRi are 0 by construction).

Recordings without a clean reference (a user's own, before and after enhancement) get the
reference-free scores, DNSMOS P.835, personalized DNSMOS and speaker similarity to an
enrollment (``pse-score`` is this command):

    pse-score --folder my_recordings/ --enhanced_dir enhanced/ --enroll me_clean.wav --out_dir scores/

``--folder`` is searched recursively for wav/flac files (any rate and channel count; mono
16 kHz is scored); ``--enhanced_dir`` holds the outputs under the same relative paths (as
``pse-enhance`` writes them). A file that cannot be read is named and skipped; the others
are scored (exit code 1 at the end).

Writes, each through a temporary file and a rename:
    <out_dir>/per_utt.tsv    one row per utterance: key and the metric columns (dB for
                             SI-SDR, SNR and their improvements), "nan" where PESQ failed
    <out_dir>/summary.yaml   num_utterances, per column {mean, std, num_nan} (NaNs are
                             excluded from mean/std), num_params when --model_file is given,
                             and the scp paths that were scored; written last, so its
                             presence marks a finished scoring run
"""

import argparse
import logging
import math
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.scoring.files import atomic_write_text, load_mono
from espnet2_pse.scoring.metrics import (
    DEFAULT_METRICS,
    METRIC_COLUMNS,
    PESQ_RATE,
    REFERENCE_FREE,
    check_metrics,
    columns_for,
    reference_free_scores,
    score_utterance,
    speaker_embedding,
)

logger = logging.getLogger("espnet2_pse.bin.score")

# State-dict entries that are statistics, not trained parameters.
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def count_parameters(model_file: Path) -> int:
    """Number of trainable values in an ESPnet ``*.pth`` state dict (BatchNorm statistics
    excluded)."""
    import torch

    try:
        state = torch.load(str(model_file), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{model_file}: cannot load the model state dict: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{model_file}: expected a state dict, got {type(state).__name__}")
    return int(
        sum(
            v.numel()
            for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point() and not k.endswith(_BUFFER_SUFFIXES)
        )
    )


def _missing(keys: Sequence[str], present: Dict[str, str], scp: Path, ref_scp: Path) -> None:
    missing = [k for k in keys if k not in present]
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise KeyError(f"{scp} lacks {len(missing)} key(s) of {ref_scp}: {shown}")


def _load_at(path: str, key: str, fs: int) -> np.ndarray:
    """Load a signal that must share its reference's sample rate ``fs``."""
    x, rate = load_mono(path, key)
    if rate != fs:
        raise ValueError(f"utterance '{key}' ({path}): {rate} Hz, but its reference is {fs} Hz")
    return x


def summarize(rows: List[Dict[str, float]], columns: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per column: mean and (population) std over finite values, and how many were NaN."""
    out = {}
    for col in columns:
        values = np.array([r[col] for r in rows], dtype=np.float64)
        nan = np.isnan(values)
        kept = values[~nan]
        out[col] = {
            "mean": float(kept.mean()) if kept.size else math.nan,
            "std": float(kept.std()) if kept.size else math.nan,
            "num_nan": int(nan.sum()),
        }
    return out


def score(
    ref_scp: Path,
    mix_scp: Path,
    out_dir: Path,
    inf_scp: Optional[Path] = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    model_file: Optional[Path] = None,
) -> Dict:
    """Score every utterance of ``ref_scp``; write per_utt.tsv and summary.yaml; return the
    summary dict."""
    metrics = check_metrics(metrics)
    columns = columns_for(metrics)
    refs = read_table(ref_scp)
    if not refs:
        raise ValueError(f"{ref_scp}: no utterances to score")
    mixes = read_table(mix_scp)
    _missing(list(refs), mixes, mix_scp, ref_scp)
    infs = None
    if inf_scp is not None:
        infs = read_table(inf_scp)
        _missing(list(refs), infs, inf_scp, ref_scp)
        extra = [k for k in infs if k not in refs]
        if extra:
            logger.warning("%s has %d key(s) not in %s (ignored), e.g. %s", inf_scp, len(extra), ref_scp, extra[0])
    num_params = count_parameters(model_file) if model_file is not None else None

    what = f"{inf_scp}" if inf_scp is not None else f"the unprocessed mixtures of {mix_scp}"
    logger.info("scoring %d utterances of %s with %s", len(refs), what, ",".join(metrics))
    rows: List[Dict[str, float]] = []
    start = time.time()
    report_every = max(1, len(refs) // 10)
    for i, (key, ref_path) in enumerate(refs.items(), 1):
        ref, fs = load_mono(ref_path, key)
        mix = _load_at(mixes[key], key, fs)
        est = None if infs is None else _load_at(infs[key], key, fs)
        if "pesq" in metrics and fs != PESQ_RATE:
            raise ValueError(f"utterance '{key}' ({ref_path}): PESQ-WB needs {PESQ_RATE} Hz, got {fs} Hz")
        rows.append(score_utterance(ref, mix, est, fs, metrics, key=key))
        if i % report_every == 0 or i == len(refs):
            logger.info("scored %d/%d utterances (%.1f s)", i, len(refs), time.time() - start)

    out_dir = Path(out_dir)
    lines = ["\t".join(("key",) + columns)]
    for key, row in zip(refs, rows):
        lines.append("\t".join([key] + [f"{row[c]:.6f}" for c in columns]))
    atomic_write_text(out_dir / "per_utt.tsv", "\n".join(lines) + "\n")

    summary = {
        "num_utterances": len(rows),
        "metrics": summarize(rows, columns),
        "ref_scp": str(ref_scp),
        "mix_scp": str(mix_scp),
        "inf_scp": str(inf_scp) if inf_scp is not None else None,
    }
    if num_params is not None:
        summary["num_params"] = num_params
    atomic_write_text(out_dir / "summary.yaml", yaml.safe_dump(summary, sort_keys=False))
    for col, stats in summary["metrics"].items():
        logger.info("%s: mean %.3f (std %.3f, %d NaN)", col, stats["mean"], stats["std"], stats["num_nan"])
    logger.info("wrote %s and %s", out_dir / "per_utt.tsv", out_dir / "summary.yaml")
    return summary


def score_folder(folder: Path, out_dir: Path, enhanced_dir: Optional[Path] = None,
                 enroll: Optional[Path] = None, metrics: Sequence[str] = REFERENCE_FREE) -> Dict:
    """Reference-free scores of every recording under ``folder`` (and of its enhanced version
    under ``enhanced_dir``); per_utt.tsv and summary.yaml as :func:`score` writes them, the
    columns suffixed ``_input`` / ``_enhanced``. Returns the summary; ``summary["failed"]``
    lists the files that could not be scored, with the reason."""
    from espnet2_pse.data.audio import AudioError, find_audio_files, load_audio

    metrics = check_metrics(metrics)
    other = [m for m in metrics if m not in REFERENCE_FREE]
    if other:
        raise ValueError(f"{', '.join(other)} need a clean reference; a folder gets {', '.join(REFERENCE_FREE)}")
    if "spk_sim" in metrics and enroll is None:
        metrics = tuple(m for m in metrics if m != "spk_sim")
        logger.warning("no --enroll: speaker similarity is left out")
    files = find_audio_files(folder)
    if not files:
        raise ValueError(f"{folder}: no wav or flac files")
    enrollment = speaker_embedding(load_audio(enroll, PESQ_RATE), PESQ_RATE) if enroll is not None else None
    versions = [("input", Path(folder))] + ([("enhanced", Path(enhanced_dir))] if enhanced_dir else [])
    columns = [f"{c}_{name}" for name, _ in versions for m in metrics for c in METRIC_COLUMNS[m]]
    rows: Dict[str, Dict[str, float]] = {}
    failed: Dict[str, str] = {}
    for i, path in enumerate(files, 1):
        rel = path.relative_to(folder).as_posix()
        row = {}
        try:
            for name, root in versions:
                # Enhanced files keep the input's relative path ("a/b.flac" -> "a/b.wav").
                target = root / rel if name == "input" else (root / rel).with_suffix(".wav")
                x = load_audio(target, PESQ_RATE)
                row.update({f"{c}_{name}": v for c, v in reference_free_scores(x, PESQ_RATE, metrics, enrollment).items()})
        except AudioError as err:
            failed[rel] = str(err)
            logger.error("%s", err)
            continue
        rows[rel] = row
        logger.info("scored %d/%d: %s", i, len(files), rel)
    if not rows:
        raise ValueError(f"{folder}: none of the {len(files)} file(s) could be scored")
    lines = ["\t".join(["file"] + columns)] + ["\t".join([rel] + [f"{r[c]:.6f}" for c in columns])
                                               for rel, r in rows.items()]
    atomic_write_text(Path(out_dir) / "per_utt.tsv", "\n".join(lines) + "\n")
    summary = {"num_utterances": len(rows), "metrics": summarize(list(rows.values()), columns),
               "folder": str(folder), "enhanced_dir": str(enhanced_dir) if enhanced_dir else None,
               "enroll": str(enroll) if enroll else None, "failed": failed}
    atomic_write_text(Path(out_dir) / "summary.yaml", yaml.safe_dump(summary, sort_keys=False))
    for col, stats in summary["metrics"].items():
        logger.info("%s: mean %.3f (std %.3f)", col, stats["mean"], stats["std"])
    return summary


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Score enhanced speech against clean references (SI-SDR(i), SNR(i), PESQ-WB, eSTOI, DNSMOS, "
        "pDNSMOS, speaker similarity), or a folder of recordings without references (--folder).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ref_scp", type=Path, default=None, help="clean references (key path), e.g. spk1.scp")
    parser.add_argument("--mix_scp", type=Path, default=None, help="unprocessed mixtures (key path), e.g. wav.scp")
    parser.add_argument(
        "--inf_scp",
        type=Path,
        default=None,
        help="enhanced signals (key path); omit to score the mixtures themselves (unprocessed row)",
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="where per_utt.tsv and summary.yaml go")
    parser.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help="comma-separated subset of " + ",".join(METRIC_COLUMNS) + " (si_sdr adds si_sdri, snr adds snri; "
        "with --folder the default is " + ",".join(REFERENCE_FREE) + ")",
    )
    g = parser.add_argument_group("recordings without clean references")
    g.add_argument("--folder", type=Path, default=None, help="recordings to score reference-free (recursive)")
    g.add_argument("--enhanced_dir", type=Path, default=None,
                   help="their enhanced versions, same relative paths with .wav (as pse-enhance writes them)")
    g.add_argument("--enroll", type=Path, default=None, help="clean speech of the person, for speaker similarity")
    parser.add_argument(
        "--model_file",
        type=Path,
        default=None,
        help="the scored model's .pth: its parameter count goes into the summary (for the size plots)",
    )
    parser.add_argument("--log_level", default="INFO", choices=("ERROR", "WARNING", "INFO", "DEBUG"))
    return parser


def main(cmd=None) -> int:
    """Score as the options say; returns 1 when a file of --folder could not be scored."""
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.folder is not None:
        if args.ref_scp or args.mix_scp or args.inf_scp:
            parser.error("--folder scores recordings without references: drop --ref_scp/--mix_scp/--inf_scp")
        if args.metrics == parser.get_default("metrics"):
            metrics = list(REFERENCE_FREE)
        summary = score_folder(args.folder, args.out_dir, args.enhanced_dir, args.enroll, metrics)
        return 1 if summary["failed"] else 0
    if args.ref_scp is None or args.mix_scp is None:
        parser.error("--ref_scp and --mix_scp are required (or --folder for recordings without references)")
    score(args.ref_scp, args.mix_scp, args.out_dir, args.inf_scp, metrics, args.model_file)
    return 0


def cli() -> None:
    """Console entry point (``pse-score``): data errors as one line, no traceback."""
    try:
        sys.exit(main())
    except (KeyError, ValueError, FileNotFoundError, ImportError) as err:
        logger.error("%s", err.args[0] if isinstance(err, KeyError) else err)
        sys.exit(1)


if __name__ == "__main__":
    cli()
