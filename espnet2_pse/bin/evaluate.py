"""Stage 7 of the recipe: enhance fixed test sets with trained models and score them.

``python -m espnet2_pse.bin.evaluate --jobs jobs.txt``

Each line of the jobs file is ``<train_config> <model_file> <test_dir> <out_dir>``; a ``-``
for the config and model scores the unprocessed mixtures. For each job the test dir's
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
from typing import List, Tuple

import soundfile

import espnet2_pse  # noqa: F401  (registers our classes before models are built)
from espnet2.bin.enh_inference import SeparateSpeech
from espnet2_pse.bin.score import score
from espnet2_pse.data.kaldi_dir import read_table, write_table
from espnet2_pse.inference.chunked import ChunkedEnhancer

Job = Tuple[str, str, Path, Path]


def read_jobs(path: Path) -> List[Job]:
    jobs = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(f"{path}:{lineno}: expected '<config> <model> <test_dir> <out_dir>', got '{line}'")
        jobs.append((parts[0], parts[1], Path(parts[2]), Path(parts[3])))
    return jobs


def enhance_dir(separate: SeparateSpeech, test_dir: Path, out: Path) -> Path:
    """Enhance ``test_dir/wav.scp`` into ``out`` (wav/ + spk1.scp); returns the scp.

    The same enhancement code as ``espnet2_pse.bin.enhance``, on whole signals.
    """
    enhancer = ChunkedEnhancer(separate, chunk_seconds=None)
    wav_dir = out / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, path in read_table(test_dir / "wav.scp").items():
        mixture, fs = soundfile.read(path, dtype="float32")
        if mixture.ndim != 1:
            raise ValueError(f"{path} ({key}): expected mono test audio, got shape {mixture.shape}")
        enhanced = enhancer.enhance_array(mixture, fs)
        target = wav_dir / f"{key}.wav"
        soundfile.write(target.with_suffix(".tmp.wav"), enhanced, fs)
        target.with_suffix(".tmp.wav").rename(target)
        written[key] = str(target.absolute())
    write_table(out / "spk1.scp", written)
    return out / "spk1.scp"


def run_job(job: Job, device: str) -> None:
    config, model_file, test_dir, out_dir = job
    if config == "-":
        score(test_dir / "spk1.scp", test_dir / "wav.scp", out_dir / "score")
        return
    separate = SeparateSpeech(train_config=config, model_file=model_file, device=device)
    inf_scp = enhance_dir(separate, test_dir, out_dir / "enhanced")
    score(test_dir / "spk1.scp", test_dir / "wav.scp", out_dir / "score", inf_scp, model_file=Path(model_file))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=Path, required=True, help="jobs file (see above)")
    parser.add_argument("--device", default="cpu", help="torch device for the models")
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (evaluate) %(message)s")
    jobs = read_jobs(args.jobs)
    start = time.time()
    for i, job in enumerate(jobs, 1):
        if (job[3] / "score" / "summary.yaml").is_file():
            logging.info("[%d/%d] %s: already scored", i, len(jobs), job[3])
            continue
        run_job(job, args.device)
        elapsed = time.time() - start
        logging.info("[%d/%d] %s scored (%.0f s elapsed, ETA %.0f s)", i, len(jobs), job[3],
                     elapsed, elapsed / i * (len(jobs) - i))


if __name__ == "__main__":
    main()
