"""Speaker-verification trials and the equal error rate (EER).

Trials are (utt1, utt2, label) with label 1 for same speaker ("target") and 0 otherwise.
Trial files use the VoxCeleb layout: one ``label utt1 utt2`` line per trial.
"""

import itertools
import os
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from espnet2_pse.data.kaldi_dir import write_table
from espnet2_pse.data.runtime import derive_rng

Trial = Tuple[str, str, int]
PathLike = Union[str, os.PathLike]


def compute_eer(scores: Sequence[float], labels: Sequence[int]) -> float:
    """EER (a fraction in [0, 1]) of detection scores, higher meaning "same speaker".

    A trial is accepted when its score is >= the threshold. The false-rejection rate (FRR,
    over targets) and false-acceptance rate (FAR, over non-targets) are evaluated at every
    distinct score (and above the highest); the EER is where the two curves cross, linearly
    interpolated between the two operating points around the crossing.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-D")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    targets, nontargets = scores[labels == 1], scores[labels == 0]
    if len(targets) == 0 or len(nontargets) == 0:
        raise ValueError(
            f"need target and non-target trials, got {len(targets)} and {len(nontargets)}"
        )
    thresholds = np.append(np.unique(scores), np.inf)
    frr = np.searchsorted(np.sort(targets), thresholds, side="left") / len(targets)
    far = 1.0 - np.searchsorted(np.sort(nontargets), thresholds, side="left") / len(nontargets)
    # FRR rises and FAR falls with the threshold; find the first point where FRR >= FAR.
    diff = far - frr
    k = int(np.argmax(diff <= 0))
    if k == 0:
        return float(far[0])
    weight = diff[k - 1] / (diff[k - 1] - diff[k])
    return float(far[k - 1] + weight * (far[k] - far[k - 1]))


def build_trials(
    utt2spk: Mapping[str, str], max_per_class: int = 1000, seed: int = 0
) -> List[Trial]:
    """Balanced target / non-target trials from an utt2spk table.

    All same-speaker pairs are candidates for targets, all cross-speaker pairs for
    non-targets; at most ``max_per_class`` of each are drawn with a seeded generator, and the
    same number of each is kept. Returned sorted, so the list only depends on the inputs.
    """
    spk2utts: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utts.setdefault(utt2spk[utt], []).append(utt)
    if len(spk2utts) < 2:
        raise ValueError(f"trials need at least 2 speakers, got {len(spk2utts)}")
    target = [pair for utts in spk2utts.values() for pair in itertools.combinations(utts, 2)]
    if not target:
        raise ValueError("trials need a speaker with at least 2 utterances")
    rng = derive_rng(seed, "trials")
    count = min(max_per_class, len(target))
    target = [target[i] for i in rng.choice(len(target), count, replace=False)]

    utts = sorted(utt2spk)
    total_nontarget = (len(utts) ** 2 - sum(len(u) ** 2 for u in spk2utts.values())) // 2
    count = min(count, total_nontarget)
    target = target[:count]  # already in random order
    nontarget = set()
    while len(nontarget) < count:
        a, b = rng.choice(len(utts), 2, replace=False)
        pair = tuple(sorted((utts[a], utts[b])))
        if utt2spk[pair[0]] != utt2spk[pair[1]]:
            nontarget.add(pair)
    return sorted([(a, b, 1) for a, b in target] + [(a, b, 0) for a, b in nontarget])


def write_trials(path: PathLike, trials: Sequence[Trial]) -> None:
    """``label utt1 utt2`` lines, written to a temporary name and renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{label} {a} {b}\n" for a, b, label in trials), encoding="utf-8")
    os.replace(tmp, path)


def read_trials(path: PathLike) -> List[Trial]:
    """Inverse of :func:`write_trials`; errors name the file and line."""
    trials = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                raise ValueError(
                    f"{path}:{number}: expected 'label utt1 utt2', got {line.strip()!r}"
                )
            trials.append((parts[1], parts[2], int(parts[0])))
    return trials


def write_espnet_trial_dir(
    trials: Sequence[Trial], wav_scp: Mapping[str, str], out_dir: PathLike
) -> None:
    """Trials in the layout espnet2.bin.spk_train validates on (EER of the speaker task).

    Writes ``trial.scp`` ("utt1*utt2 path1"), ``trial2.scp`` ("utt1*utt2 path2") and
    ``trial_label`` ("utt1*utt2 0|1"), to be passed as ``speech``, ``speech2`` and
    ``spk_labels``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = sorted({u for a, b, _ in trials for u in (a, b)} - set(wav_scp))
    if missing:
        raise KeyError(f"trial utterances missing from wav.scp: {missing[:5]}")
    keys = {f"{a}*{b}": (a, b, label) for a, b, label in trials}
    write_table(out_dir / "trial.scp", {k: wav_scp[a] for k, (a, _, _) in keys.items()})
    write_table(out_dir / "trial2.scp", {k: wav_scp[b] for k, (_, b, _) in keys.items()})
    write_table(out_dir / "trial_label", {k: label for k, (_, _, label) in keys.items()})
