"""Where bench_real_voice.py's systems keep their outputs, and how they are scored: the
per-file metrics (cached per system under <voice>/scores/), their means, and the curve of a
run's snapshots."""

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import soundfile as sf
from real_voice_tables import COLUMNS

from espnet2_pse.data.kaldi_dir import read_data_dir
from espnet2_pse.scoring.metrics import PERSONALIZED_METRICS, columns_for, score_utterance

FS = 16000
PERSONAL = ("zero-shot", "few-shot")
# personalize on clean speech alone, straight from the generalist (--clean_only): --clean_seconds
# of it, and the 5 s of the conditioned model's clean enrollment.
CLEAN_ONLY = ("clean-only", "clean-only-5s")
SYSTEMS = ("reference", "unprocessed", "noisereduce", "deepfilternet3", "generalist") + PERSONAL + CLEAN_ONLY
# Outputs that depend on the personalize setting (--base, --personalize_args) and so go to tagged folders.
PER_SETTING = ("generalist",) + PERSONAL + CLEAN_ONLY
# The conditioned generalist's enrollments: name -> (user folder, seconds taken from its start).
ENROLLMENTS = {"clean5": ("clean", 5.0), "short": ("clean", 1.5), "noisy": ("noisy", 5.0)}
# "static oracle": each test file conditioned on the teacher's embedding of its own clean
# reference, the best embedding any refinement could reach (its ceiling).
CONDITIONED = tuple(f"{mode} {name}" for mode in ("static", "refined") for name in ENROLLMENTS) + ("static oracle",)
# Condition -> (test dir of a voice, folder of the enhanced outputs).
CONDITIONS = {"noise": ("test", "enhanced"), "interferer": ("test_interferer", "enhanced_interferer")}
# The classic spectral gate is a reference point for the signal metrics only (DNSMOS costs ~1 s a clip).
BASIC_METRICS = ("si_sdr", "pesq", "estoi")
# "reference": the clean reference itself, scored by the metrics that do not compare with it:
# what an output identical to the reference would get (the recording's own hiss included).
REFERENCE_METRICS = ("dnsmos", "pdnsmos")


def output_folder(system: str, tag: str, conditioned_tag: str, refine_tag: str) -> str:
    """Folder of a system's outputs: personalize-dependent ones carry --tag, the conditioned
    model's carry --conditioned_tag (and the refined ones --refine_tag), the peers' are shared."""
    if system in CONDITIONED:
        return system.replace(" ", "_") + conditioned_tag + (refine_tag if system.startswith("refined") else "")
    if "@" in system:  # a personal model's snapshot, "<system>@ep<epoch>"
        system, epoch = system.split("@")
        return f"{system}{tag}@{epoch}"
    return f"{system}{tag}" if system in PER_SETTING else system


def snapshots(work: Path, system: str) -> List[tuple]:
    """(epoch, .pth) of the snapshots personalize kept for a system's training step."""
    exp = work / "exp" / ("zsl" if system == "zero-shot" else "fsl")
    found = [(int(p.stem.split("_ep")[1]), p) for p in exp.glob("snapshot_ep*.pth")]
    return sorted(found)


def curve_rows(root: Path, voice: str, vdir: Path, tag: str, condition: str, pool) -> List[Dict[str, float]]:
    """Signal metrics of every snapshot of both steps, with the training time up to it."""
    rows = []
    for system in PERSONAL:
        record = vdir / f"work{tag}" / "exp" / ("zsl" if system == "zero-shot" else "fsl") / "snapshots.json"
        times = json.loads(record.read_text()) if record.is_file() else {}
        for epoch, _ in snapshots(vdir / f"work{tag}", system):
            name = f"{system}@ep{epoch}"
            means = score_voice(root, voice, vdir, [name], (tag, "", ""), condition, pool, signal_only=True)[name]
            rows.append({"system": system, "epoch": epoch,
                         "train_s": times.get(str(epoch), {}).get("elapsed_s", float("nan")), **means})
    return rows


def _score_file(job) -> Dict[str, float]:
    key, ref_path, mix_path, est_path, metrics = job
    s, _ = sf.read(ref_path, dtype="float64")
    x, _ = sf.read(mix_path, dtype="float64")
    y = None if est_path is None else sf.read(est_path, dtype="float64")[0]
    return score_utterance(s, x, y, FS, metrics=metrics, key=key)


def _scored_file(system: str, test, key: str, folder: Path) -> Optional[str]:
    """The file scored as ``system``'s output for ``key``; None scores the mixture itself."""
    if system == "unprocessed":
        return None
    if system == "reference":
        return test.spk1[key]
    return str(folder / f"{key}.wav")


def score_voice(root: Path, voice: str, vdir: Path, systems: List[str], tags: Sequence[str], condition: str,
                pool, signal_only: bool = False) -> Dict[str, Dict[str, float]]:
    """Mean of every column per system; per-file scores are kept in <vdir>/scores/<condition>/.
    ``tags``: --tag, --conditioned_tag and --refine_tag (see :func:`output_folder`);
    ``signal_only``: SI-SDR, PESQ and eSTOI only (--signal_metrics)."""
    test_name, enhanced = CONDITIONS[condition]
    test = read_data_dir(root / "speakers" / voice / test_name)
    means = {}
    for system in systems:
        folder = output_folder(system, *tags)
        cache = vdir / "scores" / condition / f"{folder}.json"
        if system == "reference":
            if signal_only:  # the signal metrics all compare with it
                continue
            metrics = REFERENCE_METRICS
        else:
            metrics = BASIC_METRICS if system == "noisereduce" or signal_only else PERSONALIZED_METRICS
        done = vdir / enhanced / folder / ".done"  # outputs made again since: their scores are stale
        stale = cache.is_file() and done.is_file() and done.stat().st_mtime > cache.stat().st_mtime
        rows = json.loads(cache.read_text()) if cache.is_file() and not stale else {}
        if sorted(rows) != sorted(test.keys) or not all(set(columns_for(metrics)) <= set(r) for r in rows.values()):
            jobs = [(key, test.spk1[key], test.wav[key], _scored_file(system, test, key, vdir / enhanced / folder),
                     metrics) for key in test.keys]
            rows = dict(zip(test.keys, pool.map(_score_file, jobs)))
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(rows))
        means[system] = {c: _mean([r[c] for r in rows.values() if c in r]) for c in COLUMNS}
    return means


def _mean(values: List[float]) -> float:
    """Mean over the files that have the metric; NaN where none has it (noisereduce's DNSMOS)."""
    return float(np.nanmean(values)) if values else float("nan")
