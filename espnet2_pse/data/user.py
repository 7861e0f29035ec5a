"""Bring your own user: one person's own recordings as a target speaker.

Input folders hold .wav/.flac files at any rate, mono or multichannel (downmixed). Files longer
than ``segment_seconds`` are cut into equal segments no longer than that (each at least half of
it); files shorter than ``min_seconds`` are rejected like any bad file.

  noisy_dir              -> speakers/<user>/pretrain (the recordings themselves, premixed: true)
                            and preval (held-out segments + inject_val noise at U(-5, 5) dB;
                            the reference is the recording itself, the user's s~)
  clean_dir              -> fsl_train (clean) and fsl_val (mixtures with inject_val; with less
                            than CLEAN_HOLDOUT_MIN_SECONDS of clean speech nothing is held out
                            and fsl_val mixes the training speech itself)
  test_dir (optional)    -> test, from noisy/ and clean/ subfolders with matching file names
At least one of noisy_dir and clean_dir is needed. Without noisy_dir (a user who only has some
clean speech) the user is not added to roles.yaml's targets: the SSL stages need recordings.
The noise banks are the corpus's (the data root must be prepared first); the user is added to
roles.yaml's target list (with noisy_dir), so the SSL stages run on them unchanged, and to its
'user' list.

The three folders make three parts of the build, each with its own marker
(``speakers/<user>/.{noisy,clean,test}.done``, the settings the part was made with), so a
zero-shot build can later get a clean_dir (or lose it) without its noisy part being redone.
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
from espnet2_pse.data.user_parts import (CLEAN, NOISY, PARTS, TEST, clear_part, differences, has_files,
                                         is_current, marker, read_rejections, read_yaml, rejected_path,
                                         settings_of, write_rejections)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Less clean speech than this is all trained on: holding a third of a few seconds out would
# leave too little to learn the voice from, and too little to validate on anyway.
CLEAN_HOLDOUT_MIN_SECONDS = 30.0


@dataclass
class UserConfig:
    """Where the user's recordings are and how to cut and split them (seconds, counts, dB)."""

    name: str
    noisy_dir: str = ""
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
    folder: str, out_dir: Path, cfg: UserConfig, nj: int, rejections: Rejections, what: str, least: int
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
    if len(items) < least:
        raise ValueError(
            f"{folder}: {len(items)} usable segment(s) of {what} recordings; need at least {least} "
            f"(about {least * cfg.min_seconds:g} s or more, files of at least {cfg.min_seconds:g} s); "
            "see the rejected files listed above"
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


def _mixtures(
    base: Path, audio: Path, cfg: UserConfig, inject_val: List[Item], name: str, items: List[Item]
) -> None:
    """Fixed validation mixtures of ``items`` with inject_val noise -> ``base/name``."""
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


def _build_noisy(base: Path, audio: Path, cfg: UserConfig, nj: int, inject_val: List[Item]) -> Rejections:
    """pretrain (the recordings' segments, premixed) and preval (held-out segments + noise)."""
    rejections = Rejections()
    noisy = _segments(cfg.noisy_dir, audio / "noisy", cfg, nj, rejections, "noisy", least=2)
    total = sum(i.seconds for i in noisy)
    splits = split_by_duration(
        {i.key: i.seconds for i in noisy},
        [("preval", min(cfg.preval_seconds, total / 5))],
        who=f"user {cfg.name} noisy recordings",
    )
    pre = speaker_items(noisy, splits["pretrain"])
    write_data_dir(
        base / "pretrain", {i.key: i.path for i in pre}, {i.key: cfg.name for i in pre}, spk1="same"
    )
    _mixtures(base, audio, cfg, inject_val, "preval", speaker_items(noisy, splits["preval"]))
    return rejections


def _build_clean(base: Path, audio: Path, cfg: UserConfig, nj: int, inject_val: List[Item]) -> Rejections:
    """fsl_train (clean segments) and fsl_val (held-out clean segments + noise; below
    CLEAN_HOLDOUT_MIN_SECONDS of clean speech, the training segments + noise)."""
    rejections = Rejections()
    clean = _segments(cfg.clean_dir, audio / "clean", cfg, nj, rejections, "clean", least=1)
    total = sum(i.seconds for i in clean)
    if total < CLEAN_HOLDOUT_MIN_SECONDS:
        logging.warning(
            "user %s: %.1f s of clean speech (< %g s): all of it is trained on; fsl_val mixes that same "
            "speech, so its loss cannot show overfitting", cfg.name, total, CLEAN_HOLDOUT_MIN_SECONDS)
        tr = val = clean
    else:
        csplit = split_by_duration(
            {i.key: i.seconds for i in clean},
            [("val", min(cfg.fsl_val_seconds, total / 3))],
            rest="train",
            who=f"user {cfg.name} clean recordings",
        )
        tr, val = speaker_items(clean, csplit["train"]), speaker_items(clean, csplit["val"])
    write_data_dir(
        base / "fsl_train", {i.key: i.path for i in tr}, {i.key: cfg.name for i in tr}, spk1="same"
    )
    _mixtures(base, audio, cfg, inject_val, "fsl_val", val)
    return rejections


def _build_test(base: Path, audio: Path, cfg: UserConfig, nj: int, inject_val: List[Item]) -> Rejections:
    """test: the paired noisy/clean files as they are."""
    rejections = Rejections()
    wav, spk1, utt2spk, utt2snr = _test_pairs(cfg.test_dir, audio / "test", cfg, rejections)
    write_data_dir(base / "test", wav, utt2spk, spk1=spk1, extra={"utt2snr": utt2snr})
    return rejections


_VERBS = {"keep": "kept", "build": "built", "remove": "removed"}
_BUILDERS = {NOISY.name: _build_noisy, CLEAN.name: _build_clean, TEST.name: _build_test}


def prepare_user(out: Path, cfg: UserConfig, nj: int = 1) -> bool:
    """Add or update ``speakers/<name>`` for the user's recordings; False if nothing was done.

    The build has three parts (noisy: pretrain + preval, clean: fsl_train + fsl_val, test), each
    with a marker ``.<part>.done`` holding the settings it was made with. A matching part is kept
    as it is (its files are not rewritten); a clean or test part whose folder or settings changed
    is rebuilt alone, and removed when its folder is no longer given; an unfinished part is
    cleared and rebuilt. A finished noisy part is never rebuilt with other settings (the zero-shot
    model is trained on it): that is a ValueError. Without a noisy_dir the clean part is the one
    the others depend on. ``.done`` (the whole config) is written last.
    """
    if not _NAME.match(cfg.name):
        raise ValueError(f"user name {cfg.name!r}: use letters, digits, '_', '-' or '.'")
    if not cfg.noisy_dir and not cfg.clean_dir:
        raise ValueError(f"user {cfg.name}: give noisy recordings, clean speech or both")
    roles_path = out / "roles.yaml"
    if not (out / ".done").is_file() or not roles_path.is_file():
        raise FileNotFoundError(f"{out}: prepare the corpus (noise banks) before adding a user")
    roles = yaml.safe_load(roles_path.read_text(encoding="utf-8"))
    base = out / "speakers" / cfg.name
    audio = out / "audio" / "user" / cfg.name
    done = base / ".done"
    full = cfg.to_dict()
    old_noisy = read_yaml(marker(base, NOISY))
    if old_noisy is not None and old_noisy != settings_of(NOISY, full):
        raise ValueError(
            f"{base} was prepared with other settings ({differences(old_noisy, settings_of(NOISY, full))}); "
            "its noisy part (pretrain, preval) is what the zero-shot model learns from, so it is not "
            "rebuilt: remove it or pick another --user_name"
        )
    # Without a finished first part (noisy, else clean) nothing else can be trusted: the build starts over.
    first = NOISY if cfg.noisy_dir else CLEAN
    fresh = not is_current(base, first, settings_of(first, full))
    plan = {}
    for part in PARTS:
        wanted = bool(full[part.switch])
        if fresh:
            plan[part.name] = "build" if wanted else "absent"
        elif wanted:
            plan[part.name] = "keep" if is_current(base, part, settings_of(part, full)) else "build"
        else:
            plan[part.name] = "remove" if has_files(base, audio, part) else "absent"
    if all(a in ("keep", "absent") for a in plan.values()) and read_yaml(done) == full:
        logging.info("%s is complete; nothing to do", base)
        return False

    meta_path = base / "meta.yaml"
    is_user = old_noisy is not None or (
        meta_path.is_file() and (read_yaml(meta_path) or {}).get("source") == "user"
    )
    if any(cfg.name in spks for spks in roles.values()) and not is_user:
        raise ValueError(f"user name {cfg.name} is already a corpus speaker; pick another --user_name")
    # The summary marker goes first and comes back last, once every part agrees with it.
    done.unlink(missing_ok=True)
    if fresh and (base.exists() or audio.exists()):
        logging.warning("removing the incomplete user build %s", base)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(audio, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    inject_val: Optional[List[Item]] = None
    for part in PARTS:
        action = plan[part.name]
        if action == "remove":
            logging.info("user %s: removing the %s part (no %s given)", cfg.name, part.name, part.switch)
            clear_part(base, audio, part)
        elif action == "build":
            if has_files(base, audio, part):
                logging.info(
                    "user %s: rebuilding the %s part (other settings or unfinished)", cfg.name, part.name
                )
                clear_part(base, audio, part)
            if inject_val is None:
                inject_val = _noise_items(out, "inject_val")
            rejections = _BUILDERS[part.name](base, audio, cfg, nj, inject_val)
            rejections.write(rejected_path(base, part))
            write_yaml(marker(base, part), settings_of(part, full))

    rejected: List[Tuple[str, str]] = []
    for part in PARTS:
        if full[part.switch]:
            rejected.extend(read_rejections(rejected_path(base, part)))
    write_rejections(base / "rejected.txt", rejected)
    write_yaml(
        meta_path,
        {
            "speaker": cfg.name,
            "source": "user",
            "premixed": bool(cfg.noisy_dir),  # its pretrain holds the noisy recordings
            "has_clean": bool(cfg.clean_dir),
            "has_test": bool(cfg.test_dir),
            "noisy_dir": str(Path(cfg.noisy_dir).absolute()) if cfg.noisy_dir else "",
            "pretrain_seconds": round(read_data_dir(base / "pretrain").total_seconds(), 3) if cfg.noisy_dir else 0.0,
            "rejected_files": len(rejected),
        },
    )
    if cfg.noisy_dir and cfg.name not in roles["target"]:
        roles["target"] = list(roles["target"]) + [cfg.name]
    # 'user' lists the targets that are real people, for recipes that personalize only for them.
    if cfg.name not in roles.get("user", []):
        roles["user"] = list(roles.get("user", [])) + [cfg.name]
    write_yaml(roles_path, roles)
    write_yaml(done, full)
    logging.info(
        "user %s: %s; %d file(s) rejected (%s)",
        cfg.name,
        ", ".join(f"{name} {_VERBS[action]}" for name, action in plan.items() if action != "absent"),
        len(rejected),
        base / "rejected.txt",
    )
    return True
