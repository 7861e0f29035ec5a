"""Preparation of the paper's real corpora: LibriSpeech, FSD50K and MUSAN.

- LibriSpeech (train-clean-100, optionally + train-clean-360): the paper's 20 target and 20
  validation speakers; every other speaker of the chosen subsets is a generalist speaker.
  Files are SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac; speaker sex comes from SPEAKERS.TXT.
- FSD50K (premixture): clips whose labels contain "speech" or "music" (any case) are dropped;
  the dev set's train/val split gives premix_train/premix_val, the eval set premix_test.
- MUSAN noise (injection/test): free-sound -> inject_train, its last 60 files (sorted by path,
  after the length filter) -> inject_val; sound-bible -> test.
Files shorter than 4 s are dropped, everything is resampled to 16 kHz mono PCM_16 WAV under
``<data>/audio`` (MUSAN files already in that format are used in place). Skipped files go to
the Rejections list with their reason.
"""

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet2_pse.data.audio import (
    SAMPLE_RATE,
    AudioError,
    Rejections,
    fit_peak,
    is_working_format,
    load_audio,
    write_wav,
)
from espnet2_pse.data.download import librispeech_subset_dir, locate, musan_noise_dir
from espnet2_pse.data.fixed_mixtures import Item
from espnet2_pse.data.layout import Sources
from espnet2_pse.data.runtime import parallel_map

# Authors' code/speakers/test.csv and validation.csv (methods.md 1.2).
PAPER_TARGET_SPEAKERS = (
    "19",
    "26",
    "39",
    "40",
    "78",
    "83",
    "87",
    "89",
    "118",
    "125",
    "163",
    "196",
    "198",
    "200",
    "201",
    "250",
    "254",
    "307",
    "405",
    "446",
)
PAPER_VALIDATION_SPEAKERS = (
    "298",
    "302",
    "322",
    "426",
    "587",
    "730",
    "887",
    "1116",
    "1235",
    "1263",
    "1502",
    "1594",
    "1723",
    "1867",
    "2159",
    "2289",
    "2436",
    "2518",
    "2911",
    "2952",
)
_LIBRI_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


@dataclass
class RealConfig:
    """Locations and options of the real corpora."""

    librispeech: str = ""
    fsd50k: str = ""
    musan: str = ""
    subsets: Tuple[str, ...] = ("train-clean-100",)
    target_speakers: Tuple[str, ...] = PAPER_TARGET_SPEAKERS
    validation_speakers: Tuple[str, ...] = PAPER_VALIDATION_SPEAKERS
    musan_val_files: int = 60
    min_seconds: float = 4.0
    download: bool = False
    download_dir: str = "downloads"

    def validate(self) -> None:
        if not self.subsets or not self.target_speakers or not self.validation_speakers:
            raise ValueError("need at least one LibriSpeech subset, target speaker and validation speaker")
        both = set(self.target_speakers) & set(self.validation_speakers)
        if both:
            raise ValueError(f"speakers {sorted(both)} are listed as both target and validation speakers")
        if self.musan_val_files < 1:
            raise ValueError("musan_val_files must be at least 1")

    def to_dict(self) -> dict:
        return {
            "librispeech": self.librispeech,
            "fsd50k": self.fsd50k,
            "musan": self.musan,
            "subsets": list(self.subsets),
            "target_speakers": list(self.target_speakers),
            "validation_speakers": list(self.validation_speakers),
            "musan_val_files": self.musan_val_files,
            "min_seconds": self.min_seconds,
        }


def _convert_job(job) -> Tuple[Optional[Item], Optional[Tuple[str, str]]]:
    """Check one source file and write it in the working format (or keep it in place).

    job: (key, src, dst, label, min_seconds, in_place_ok) -> (Item, None) or (None, (path, reason)).
    """
    key, src, dst, label, min_seconds, in_place_ok = job
    try:
        x = load_audio(src, min_seconds=min_seconds)
    except AudioError as err:
        return None, (err.path, err.reason)
    if in_place_ok and is_working_format(src):
        path = str(Path(src).absolute())
    else:
        # Resampling can overshoot full scale: scale down only then.
        write_wav(dst, fit_peak(x, peak=0.99)[0])
        path = str(dst)
    return Item(key, path, len(x) / SAMPLE_RATE, label), None


def _convert(jobs: Sequence[tuple], nj: int, desc: str, rejections: Rejections) -> List[Item]:
    items = []
    for item, rejected in parallel_map(_convert_job, jobs, nj, desc=desc):
        if rejected:
            rejections.add(*rejected)
        else:
            items.append(item)
    return items


def read_speakers_txt(root: Path) -> Dict[str, str]:
    """speaker id -> sex ("F"/"M") from LibriSpeech's SPEAKERS.TXT (empty if absent)."""
    for cand in (root / "LibriSpeech" / "SPEAKERS.TXT", root / "SPEAKERS.TXT"):
        if cand.is_file():
            sexes = {}
            for line in cand.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith(";") or "|" not in line:
                    continue
                fields = [f.strip() for f in line.split("|")]
                sexes[fields[0]] = fields[1]
            return sexes
    logging.warning("SPEAKERS.TXT not found under %s; speaker sex is left out of meta.yaml", root)
    return {}


def librispeech_sources(
    root: Path, cfg: RealConfig, out: Path, nj: int, rejections: Rejections
) -> Tuple[Dict[str, List[Item]], Dict[str, List[str]], Dict[str, dict]]:
    """Convert LibriSpeech; returns (speaker -> Items, roles, speaker info)."""
    files: Dict[str, List[Path]] = {}
    for subset in cfg.subsets:
        sub = librispeech_subset_dir(root, subset)
        for spk_dir in sorted(p for p in sub.iterdir() if p.is_dir()):
            files.setdefault(spk_dir.name, []).extend(sorted(spk_dir.rglob("*.flac")))
    wanted = list(cfg.target_speakers) + list(cfg.validation_speakers)
    missing = [s for s in wanted if s not in files]
    if missing:
        raise ValueError(
            f"LibriSpeech under {root}: speakers {missing} not found in subsets {list(cfg.subsets)}"
        )
    jobs, seen = [], {}
    for spk in sorted(files):
        for f in files[spk]:
            m = _LIBRI_NAME.match(f.stem)
            if not m or m.group(1) != spk:
                rejections.add(f, f"name does not follow {spk}-CHAPTER-UTTERANCE.flac")
                continue
            if f.stem in seen:
                rejections.add(f, f"duplicate key {f.stem} (already from {seen[f.stem]})")
                continue
            seen[f.stem] = f
            dst = out / "audio" / "speech" / spk / f"{f.stem}.wav"
            jobs.append((f.stem, str(f), dst.absolute(), spk, cfg.min_seconds, False))
    speakers: Dict[str, List[Item]] = {}
    for item in _convert(jobs, nj, "LibriSpeech", rejections):
        speakers.setdefault(item.label, []).append(item)
    gen = sorted((s for s in speakers if s not in wanted), key=lambda s: (len(s), s))
    roles = {
        "target": list(cfg.target_speakers),
        "validation": list(cfg.validation_speakers),
        "generalist": gen,
    }
    sexes = read_speakers_txt(root)
    info = {s: {"gender": sexes[s]} for s in speakers if s in sexes}
    return speakers, roles, info


def _read_csv(path: Path, required: Sequence[str]) -> List[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: FSD50K ground-truth file not found")
    with open(path, newline="", encoding="utf-8") as fp:
        reader = csv.DictReader(fp)
        absent = [c for c in required if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing column(s) {absent} (has {reader.fieldnames})")
        return list(reader)


def fsd50k_sources(
    root: Path, cfg: RealConfig, out: Path, nj: int, rejections: Rejections
) -> Dict[str, List[Item]]:
    """Premixture banks from FSD50K (speech/music-labelled clips removed)."""
    gt = root / "FSD50K.ground_truth"
    rows = [(r, "dev") for r in _read_csv(gt / "dev.csv", ("fname", "labels", "split"))]
    rows += [(r, "eval") for r in _read_csv(gt / "eval.csv", ("fname", "labels"))]
    bank_of = {("dev", "train"): "premix_train", ("dev", "val"): "premix_val"}
    jobs, seen = [], {}
    dropped = 0
    for row, part in rows:
        labels = row["labels"].lower()
        if "speech" in labels or "music" in labels:
            dropped += 1
            continue
        bank = "premix_test" if part == "eval" else bank_of.get((part, row["split"].strip()))
        src = root / f"FSD50K.{part}_audio" / f"{row['fname']}.wav"
        if bank is None:
            rejections.add(src, f"unknown split '{row['split']}' in {part}.csv")
            continue
        key = f"fsd50k-{row['fname']}"
        if key in seen:
            rejections.add(src, f"duplicate key {key} (already listed for {seen[key]})")
            continue
        seen[key] = src
        family = row["labels"].split(",")[0].strip() or "unlabelled"
        jobs.append(
            (
                key,
                str(src),
                (out / "audio" / "noise" / bank / f"{key}.wav").absolute(),
                f"{bank}|{family}",
                cfg.min_seconds,
                False,
            )
        )
    logging.info("FSD50K: %d clips, %d dropped for speech/music labels", len(rows), dropped)
    banks: Dict[str, List[Item]] = {"premix_train": [], "premix_val": [], "premix_test": []}
    for item in _convert(jobs, nj, "FSD50K", rejections):
        bank, family = item.label.split("|", 1)
        banks[bank].append(Item(item.key, item.path, item.seconds, family))
    return banks


def musan_sources(
    root: Path, cfg: RealConfig, out: Path, nj: int, rejections: Rejections
) -> Dict[str, List[Item]]:
    """Injection banks (free-sound -> train, last ``musan_val_files`` -> val) and test (sound-bible)."""
    noise_dir = musan_noise_dir(root)
    parts = {}
    for sub in ("free-sound", "sound-bible"):
        files = sorted((noise_dir / sub).glob("*.wav"))
        if not files:
            raise FileNotFoundError(f"{noise_dir / sub}: no .wav files")
        jobs = [
            (
                f"musan-{f.stem}",
                str(f),
                (out / "audio" / "noise" / sub / f"musan-{f.stem}.wav").absolute(),
                sub,
                cfg.min_seconds,
                True,
            )
            for f in files
        ]
        # Keys follow the source file names, so sorting by key is the paper's sort by path.
        parts[sub] = sorted(_convert(jobs, nj, f"MUSAN {sub}", rejections), key=lambda i: i.key)
    free = parts["free-sound"]
    if len(free) <= cfg.musan_val_files:
        raise ValueError(
            f"{noise_dir / 'free-sound'}: {len(free)} usable files, "
            f"need more than musan_val_files={cfg.musan_val_files}"
        )
    cut = len(free) - cfg.musan_val_files
    return {"inject_train": free[:cut], "inject_val": free[cut:], "test": parts["sound-bible"]}


def build_sources(out: Path, cfg: RealConfig, nj: int, rejections: Rejections) -> Sources:
    """Locate (or download) the three corpora and convert them; returns the corpus Sources."""
    dl = Path(cfg.download_dir)
    libri = locate("librispeech", cfg.librispeech, cfg.download, dl, parts=cfg.subsets)
    fsd = locate("fsd50k", cfg.fsd50k, cfg.download, dl)
    musan = locate("musan", cfg.musan, cfg.download, dl)
    speakers, roles, info = librispeech_sources(libri, cfg, out, nj, rejections)
    noise = fsd50k_sources(fsd, cfg, out, nj, rejections)
    noise.update(musan_sources(musan, cfg, out, nj, rejections))
    for bank in noise:
        noise[bank].sort(key=lambda i: i.key)
    return Sources("librispeech", speakers, roles, noise, info)
