"""The user that bench_real_voice.py plays, as folders: a voice's own noisy recordings, its
clean seconds, and the enrollment clips cut from them."""

import shutil
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf
import torch
from real_voice_scoring import ENROLLMENTS, FS

from espnet2_pse.data.debian_real import target_voice_ids
from espnet2_pse.data.kaldi_dir import read_data_dir
from espnet2_pse.data.mixing import mix_at_snr
from espnet2_pse.data.runtime import derive_rng


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


def write_enrollments(user: Path) -> Dict[str, Path]:
    """The conditioned model's enrollment clips (:data:`ENROLLMENTS`): the first seconds of the
    user's clean or noisy files in name order, joined; written once."""
    paths = {}
    for name, (folder, seconds) in ENROLLMENTS.items():
        paths[name] = user / "enroll" / f"{name}.wav"
        if paths[name].is_file():
            continue
        need, pieces = int(seconds * FS), []
        for path in sorted((user / folder).glob("*.wav")):
            pieces.append(sf.read(str(path), dtype="float32")[0][: need - sum(map(len, pieces))])
            if sum(map(len, pieces)) == need:
                break
        if not pieces or sum(map(len, pieces)) < need:
            sys.exit(f"bench: {user / folder} holds less than the {seconds:g} s of the '{name}' enrollment")
        paths[name].parent.mkdir(exist_ok=True)
        tmp = paths[name].with_suffix(".tmp.wav")
        sf.write(str(tmp), np.concatenate(pieces), FS, subtype="PCM_16")
        tmp.replace(paths[name])
    return paths


def clean_enrollment_folder(user: Path) -> Path:
    """A folder holding only the 5-s clean enrollment ("clean5"), for personalize --clean_dir."""
    folder = user / "clean5"
    if not (folder / "clean5.wav").is_file():
        folder.mkdir(exist_ok=True)
        shutil.copyfile(write_enrollments(user)["clean5"], folder / "clean5.wav")
    return folder
