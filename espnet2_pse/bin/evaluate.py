"""Stage 7 of the recipe: enhance fixed test sets with trained models and score them.

``python -m espnet2_pse.bin.evaluate --jobs jobs.txt``

Each line of the jobs file is ``<train_config> <model_file> <test_dir> <out_dir>``; a ``-``
for the config and model scores the unprocessed mixtures. Speaker-conditioned models add
``<enroll.npy>`` (the (D,) enrollment embedding of the test set's speaker) and optionally
``<refine.yaml>`` (``student_config``, ``student_model`` and the
:class:`~espnet2_pse.inference.conditioned.RefinementOptions` keys) to refine the embedding
on the fly; refined jobs also write ``<out_dir>/enhanced/refinement.yaml`` (update counts and
accept rates per utterance and overall). For each job the test dir's
mixtures (``wav.scp``) are enhanced into ``<out_dir>/enhanced/`` (wavs + ``spk1.scp``) and
scored against ``spk1.scp`` by :func:`espnet2_pse.bin.score.score` into
``<out_dir>/score/`` (per_utt.tsv, summary.yaml). Every job runs in this one process, so a
grid of small CPU models is not dominated by start-up time; jobs with a
``<out_dir>/score/summary.yaml`` are skipped, so an interrupted stage resumes.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import soundfile
import yaml

import espnet2_pse  # noqa: F401  (registers our classes before models are built)
from espnet2.bin.enh_inference import SeparateSpeech
from espnet2_pse.bin.score import score
from espnet2_pse.scoring.metrics import DEFAULT_METRICS, METRIC_COLUMNS, check_metrics
from espnet2_pse.data.kaldi_dir import read_table, write_table
from espnet2_pse.inference.chunked import ChunkedEnhancer
from espnet2_pse.inference.conditioned import ConditionedEnhancer, RefinementOptions, load_student


class Job(NamedTuple):
    config: str
    model_file: str
    test_dir: Path
    out_dir: Path
    enroll: Optional[Path] = None
    refine: Optional[Path] = None


def read_jobs(path: Path) -> List[Job]:
    jobs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if not 4 <= len(parts) <= 6:
            raise ValueError(
                f"{path}:{lineno}: expected '<config> <model> <test_dir> <out_dir> [<enroll.npy> "
                f"[<refine.yaml>]]', got '{line}'"
            )
        jobs.append(Job(parts[0], parts[1], *map(Path, parts[2:])))
    return jobs


def load_refinement(path: Path, device: str):
    """(student, RefinementOptions) from a refine.yaml (see the module docstring)."""
    options = yaml.safe_load(path.read_text()) or {}
    try:
        student_files = options.pop("student_config"), options.pop("student_model")
    except KeyError as err:
        raise ValueError(f"{path}: missing key {err} (the distilled student's files)") from None
    try:
        refinement = RefinementOptions(**options)
    except TypeError as err:
        raise ValueError(f"{path}: {err}") from None
    return load_student(*student_files, device), refinement


def enhance_dir(enhancer, test_dir: Path, out: Path) -> Path:
    """Enhance ``test_dir/wav.scp`` into ``out`` (wav/ + spk1.scp); returns the scp.

    ``enhancer`` is a :class:`ChunkedEnhancer` (the same code as ``espnet2_pse.bin.enhance``)
    or a :class:`ConditionedEnhancer`, used on whole signals.
    """
    stats: Dict[str, Dict[str, float]] = {}
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, path in read_table(test_dir / "wav.scp").items():
        mixture, fs = soundfile.read(path, dtype="float32")
        if mixture.ndim != 1:
            raise ValueError(f"{path} ({key}): expected mono test audio, got shape {mixture.shape}")
        enhanced = enhancer.enhance_array(mixture, fs)
        if getattr(enhancer, "last_stats", None):
            stats[key] = dict(enhancer.last_stats)
        target = wav_dir / f"{key}.wav"
        soundfile.write(target.with_suffix(".tmp.wav"), enhanced, fs)
        target.with_suffix(".tmp.wav").rename(target)
        written[key] = str(target.absolute())
    if stats:
        updates = sum(s["updates"] for s in stats.values())
        accepted = sum(s["accepted"] for s in stats.values())
        overall = {"updates": updates, "accepted": accepted, "accept_rate": accepted / updates if updates else 0.0}
        tmp = out / ".refinement.yaml.tmp"
        tmp.write_text(yaml.safe_dump({"overall": overall, "per_utt": stats}, sort_keys=False))
        tmp.rename(out / "refinement.yaml")
    write_table(out / "spk1.scp", written)
    return out / "spk1.scp"


def run_job(job: Job, device: str, cache: Dict, metrics: Sequence[str] = DEFAULT_METRICS) -> None:
    """Enhance and score one job; ``cache`` keeps loaded students between jobs."""
    if job.config == "-":
        score(job.test_dir / "spk1.scp", job.test_dir / "wav.scp", job.out_dir / "score", metrics=metrics)
        return
    separate = SeparateSpeech(train_config=job.config, model_file=job.model_file, device=device)
    if job.enroll is None:
        enhancer = ChunkedEnhancer(separate, chunk_seconds=None)
    else:
        student = refinement = None
        if job.refine is not None:
            if job.refine not in cache:
                cache[job.refine] = load_refinement(job.refine, device)
            student, refinement = cache[job.refine]
        enhancer = ConditionedEnhancer(separate, np.load(job.enroll), student=student, refinement=refinement)
    inf_scp = enhance_dir(enhancer, job.test_dir, job.out_dir / "enhanced")
    score(job.test_dir / "spk1.scp", job.test_dir / "wav.scp", job.out_dir / "score", inf_scp,
          metrics=metrics, model_file=Path(job.model_file))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, required=True, help="jobs file (see above)")
    parser.add_argument("--device", default="cpu", help="torch device for the models")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics of espnet2_pse.bin.score (" + ",".join(METRIC_COLUMNS) + ")")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (evaluate) %(message)s")
    metrics = check_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
    jobs = read_jobs(args.jobs)
    start, cache = time.time(), {}
    for i, job in enumerate(jobs, 1):
        if (job.out_dir / "score" / "summary.yaml").is_file():
            logging.info("[%d/%d] %s: already scored", i, len(jobs), job.out_dir)
            continue
        run_job(job, args.device, cache, metrics)
        elapsed = time.time() - start
        logging.info("[%d/%d] %s scored (%.0f s elapsed, ETA %.0f s)", i, len(jobs), job.out_dir,
                     elapsed, elapsed / i * (len(jobs) - i))


if __name__ == "__main__":
    main()
