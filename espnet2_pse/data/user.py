"""Bring your own user: one person's own recordings as a target speaker.

Input folders hold .wav/.flac files at any rate, mono or multichannel (downmixed). Files longer
than ``segment_seconds`` are cut into equal segments no longer than that (each at least half of
it); files shorter than ``min_seconds`` are rejected like any bad file.

  noisy_dir (required)   -> speakers/<user>/pretrain (the recordings themselves, premixed: true)
                            and preval (held-out segments + inject_val noise at U(-5, 5) dB;
                            the reference is the recording itself, the user's s~)
  clean_dir (optional)   -> fsl_train (clean) and fsl_val (mixtures with inject_val)
  test_dir (optional)    -> test, from noisy/ and clean/ subfolders with matching file names
The noise banks are the corpus's (the data root must be prepared first); the user is added to
roles.yaml's target list, so the SSL stages run on them unchanged, and to its 'user' list.
"""

import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
import yaml

from espnet2_pse.data.audio import (
    SAMPLE_RATE,
    AudioError,
    Rejections,
    find_audio_files,
    fit_peak,
    load_audio,
    write_wav,
)
from espnet2_pse.data.fixed_mixtures import Item, make_fixed_mixtures, speaker_items
from espnet2_pse.data.kaldi_dir import read_data_dir, write_data_dir
from espnet2_pse.data.layout import write_yaml
from espnet2_pse.data.mixing import snr_db
from espnet2_pse.data.runtime import derive_rng, parallel_map
from espnet2_pse.data.splits import split_by_duration

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class UserConfig:
    """Where the user's recordings are and how to cut and split them (seconds, counts, dB)."""

    name: str
    noisy_dir: str
    clean_dir: str = ""
    test_dir: str = ""
    segment_seconds: float = 8.0
    min_seconds: float = 4.0
    preval_seconds: float = 30.0
    fsl_val_seconds: float = 30.0
    val_mixtures: int = 64
    mixture_seconds: float = 4.0
    inject_snr: Tuple[float, float] = (-5.0, 5.0)
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _key_base(name: str, folder: Path, f: Path) -> str:
    rel = f.relative_to(folder).with_suffix("").as_posix()
    return f"{name}-" + re.sub(r"[^A-Za-z0-9_.-]", "_", rel)


def _segment_job(job) -> Tuple[List[Item], Optional[Tuple[str, str]]]:
    """(src, key_base, out_dir, name, cfg) -> (segment Items, rejection or None)."""
    src, key_base, out_dir, name, cfg = job
    try:
        x = load_audio(src, min_seconds=cfg.min_seconds)
    except AudioError as err:
        return [], (err.path, err.reason)
    pieces = int(np.ceil(len(x) / (cfg.segment_seconds * SAMPLE_RATE)))
    bounds = np.linspace(0, len(x), pieces + 1).astype(int)
    items = []
    for j in range(pieces):
        seg = x[bounds[j] : bounds[j + 1]]
        key = f"{key_base}-{j:03d}"
        path = out_dir / f"{key}.wav"
        write_wav(path, fit_peak(seg, peak=0.99)[0])
        items.append(Item(key, str(path), len(seg) / SAMPLE_RATE, name))
    return items, None


def _segments(
    folder: str, out_dir: Path, cfg: UserConfig, nj: int, rejections: Rejections, what: str
) -> List[Item]:
    folder = Path(folder).absolute()
    jobs, seen = [], {}
    for f in find_audio_files(folder):
        base = _key_base(cfg.name, folder, f)
        if base in seen:
            rejections.add(f, f"duplicate key {base} (already from {seen[base]})")
            continue
        seen[base] = f
        jobs.append((str(f), base, out_dir, cfg.name, cfg))
    items: List[Item] = []
    for segs, rejected in parallel_map(_segment_job, jobs, nj, desc=f"user {what}"):
        if rejected:
            rejections.add(*rejected)
        items.extend(segs)
    if len(items) < 2:
        raise ValueError(
            f"{folder}: {len(items)} usable segment(s) of {what} recordings; need at least 2 "
            f"(about {2 * cfg.min_seconds:g} s or more); see the rejected files listed above"
        )
    return sorted(items, key=lambda i: i.key)


def _test_pairs(folder: str, out_dir: Path, cfg: UserConfig, rejections: Rejections):
    """Paired noisy/clean test files -> (wav, spk1, utt2spk, utt2snr)."""
    folder = Path(folder).absolute()
    noisy_dir, clean_dir = folder / "noisy", folder / "clean"
    if not noisy_dir.is_dir() or not clean_dir.is_dir():
        raise FileNotFoundError(f"{folder}: a paired test folder needs noisy/ and clean/ subfolders")
    clean = {f.relative_to(clean_dir).with_suffix("").as_posix(): f for f in find_audio_files(clean_dir)}
    wav, spk1, utt2spk, utt2snr = {}, {}, {}, {}
    for f in find_audio_files(noisy_dir):
        rel = f.relative_to(noisy_dir).with_suffix("").as_posix()
        key = _key_base(cfg.name, noisy_dir, f).replace(f"{cfg.name}-", f"{cfg.name}-test-", 1)
        if rel not in clean:
            rejections.add(f, f"no clean file named {rel}.wav/.flac in {clean_dir}")
            continue
        if key in wav:
            rejections.add(f, f"duplicate key {key}")
            continue
        try:
            x = load_audio(f, min_seconds=cfg.min_seconds)
            s = load_audio(clean[rel], min_seconds=cfg.min_seconds)
        except AudioError as err:
            rejections.add_error(err)
            continue
        if abs(len(x) - len(s)) > 0.01 * SAMPLE_RATE:
            rejections.add(
                f, f"lasts {len(x) / SAMPLE_RATE:.2f} s but its clean file {len(s) / SAMPLE_RATE:.2f} s"
            )
            continue
        n = min(len(x), len(s))
        x, s = fit_peak(x[:n], s[:n], peak=0.99)
        write_wav(out_dir / "noisy" / f"{key}.wav", x)
        write_wav(out_dir / "clean" / f"{key}.wav", s)
        wav[key], spk1[key] = str(out_dir / "noisy" / f"{key}.wav"), str(out_dir / "clean" / f"{key}.wav")
        utt2spk[key] = cfg.name
        s64, x64 = torch.from_numpy(s.astype(np.float64)), torch.from_numpy(x.astype(np.float64))
        utt2snr[key] = f"{float(snr_db(s64, x64 - s64)):.2f}"
    if not wav:
        raise ValueError(f"{folder}: no usable noisy/clean test pairs")
    return wav, spk1, utt2spk, utt2snr


def _noise_items(out: Path, bank: str) -> List[Item]:
    d = read_data_dir(out / "noise" / bank)
    fam = d.tables.get("utt2family", {})
    return [Item(k, d.wav[k], d.utt2dur[k], fam.get(k, "")) for k in d.keys]


def prepare_user(out: Path, cfg: UserConfig, nj: int = 1) -> bool:
    """Add ``speakers/<name>`` for the user's recordings; False if it already exists (no-op)."""
    if not _NAME.match(cfg.name):
        raise ValueError(f"user name {cfg.name!r}: use letters, digits, '_', '-' or '.'")
    roles_path = out / "roles.yaml"
    if not (out / ".done").is_file() or not roles_path.is_file():
        raise FileNotFoundError(f"{out}: prepare the corpus (noise banks) before adding a user")
    roles = yaml.safe_load(roles_path.read_text(encoding="utf-8"))
    base = out / "speakers" / cfg.name
    audio = out / "audio" / "user" / cfg.name
    done = base / ".done"
    if done.is_file():
        old = yaml.safe_load(done.read_text(encoding="utf-8"))
        if old != cfg.to_dict():
            raise ValueError(
                f"{base} was prepared with other settings ({old}); remove it or pick another --user_name"
            )
        logging.info("%s is complete; nothing to do", base)
        return False
    meta_path = base / "meta.yaml"
    is_user = (
        meta_path.is_file() and yaml.safe_load(meta_path.read_text(encoding="utf-8")).get("source") == "user"
    )
    if any(cfg.name in spks for spks in roles.values()) and not is_user:
        raise ValueError(f"user name {cfg.name} is already a corpus speaker; pick another --user_name")
    if base.exists() or audio.exists():
        logging.warning("removing the incomplete user build %s", base)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(audio, ignore_errors=True)
    base.mkdir(parents=True)
    rejections = Rejections()
    inject_val = _noise_items(out, "inject_val")

    def mixtures(name: str, items: List[Item]) -> None:
        rng = derive_rng(cfg.seed, "user", cfg.name, name)
        wav, spk1, utt2spk, extra = make_fixed_mixtures(
            audio / "mix" / name,
            name,
            items,
            inject_val,
            cfg.val_mixtures,
            rng,
            cfg.inject_snr,
            cfg.mixture_seconds,
        )
        write_data_dir(base / name, wav, utt2spk, spk1=spk1, extra=extra)

    noisy = _segments(cfg.noisy_dir, audio / "noisy", cfg, nj, rejections, "noisy")
    splits = split_by_duration(
        {i.key: i.seconds for i in noisy},
        [("preval", cfg.preval_seconds)],
        who=f"user {cfg.name} noisy recordings",
    )
    pre = speaker_items(noisy, splits["pretrain"])
    write_data_dir(
        base / "pretrain", {i.key: i.path for i in pre}, {i.key: cfg.name for i in pre}, spk1="same"
    )
    mixtures("preval", speaker_items(noisy, splits["preval"]))
    if cfg.clean_dir:
        clean = _segments(cfg.clean_dir, audio / "clean", cfg, nj, rejections, "clean")
        total = sum(i.seconds for i in clean)
        csplit = split_by_duration(
            {i.key: i.seconds for i in clean},
            [("val", min(cfg.fsl_val_seconds, total / 3))],
            rest="train",
            who=f"user {cfg.name} clean recordings",
        )
        tr = speaker_items(clean, csplit["train"])
        write_data_dir(
            base / "fsl_train", {i.key: i.path for i in tr}, {i.key: cfg.name for i in tr}, spk1="same"
        )
        mixtures("fsl_val", speaker_items(clean, csplit["val"]))
    if cfg.test_dir:
        wav, spk1, utt2spk, utt2snr = _test_pairs(cfg.test_dir, audio / "test", cfg, rejections)
        write_data_dir(base / "test", wav, utt2spk, spk1=spk1, extra={"utt2snr": utt2snr})
    rejections.write(base / "rejected.txt")
    write_yaml(
        base / "meta.yaml",
        {
            "speaker": cfg.name,
            "source": "user",
            "premixed": True,
            "has_clean": bool(cfg.clean_dir),
            "has_test": bool(cfg.test_dir),
            "noisy_dir": str(Path(cfg.noisy_dir).absolute()),
            "pretrain_seconds": round(sum(i.seconds for i in pre), 3),
            "rejected_files": len(rejections),
        },
    )
    if cfg.name not in roles["target"]:
        roles["target"] = list(roles["target"]) + [cfg.name]
    # 'user' lists the targets that are real people, for recipes that personalize only for them.
    if cfg.name not in roles.get("user", []):
        roles["user"] = list(roles.get("user", [])) + [cfg.name]
    write_yaml(roles_path, roles)
    write_yaml(done, cfg.to_dict())
    logging.info(
        "user %s: %d noisy segments, %d file(s) rejected (%s)",
        cfg.name,
        len(noisy),
        len(rejections),
        base / "rejected.txt",
    )
    return True
