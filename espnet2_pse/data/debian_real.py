"""The ``debian_real`` corpus: real recorded voices and sound effects from Debian packages.

Packages and roles are listed in :mod:`espnet2_pse.data.debian_sources`. From them:

- speech: each voice's clips (dialogue lines, words, letters, read sentences) are decoded,
  resampled to 16 kHz and joined in path order, with a short pause between clips, into
  utterances of ``utterance_seconds`` (the paper's 4-s floor; clips longer than the ceiling
  are cut). A voice's clips never leave its voice, and a voice has one role.
- noise: each package's effects are levelled to a common RMS (with a random gain), split by
  clip into the banks of its family (premix: train/val/test; inject: train/val; test), and
  joined in a seeded random order into scenes of ``scene_seconds`` with short gaps, so short
  effects become realistic intermittent backgrounds instead of being looped.
Everything is derived from ``seed`` and the package versions, which the build records.
"""

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np

from espnet2_pse.data import debian_sources as inventory
from espnet2_pse.data.audio import SAMPLE_RATE, AudioError, Rejections, fit_peak, load_audio, write_wav
from espnet2_pse.data.fixed_mixtures import Item
from espnet2_pse.data.layout import Sources
from espnet2_pse.data.runtime import derive_rng, parallel_map

# Banks of each family and the share of a package's clips each gets.
BANK_SHARES = {
    "premix": (("premix_train", 0.7), ("premix_val", 0.1), ("premix_test", 0.2)),
    "inject": (("inject_train", 0.85), ("inject_val", 0.15)),
    "test": (("test", 1.0),),
}
# Level of every noise clip before its random gain (RMS, dB full scale).
NOISE_RMS_DB = -25.0
# Longer clips of these packages are music tracks, not effects or ambiences.
MAX_NOISE_CLIP_SECONDS = 30.0


@dataclass
class DebianConfig:
    """What to take from the packages (minutes, seconds) and where they are unpacked.

    ``*_minutes`` of 0 take everything. ``targets`` restricts the target voices (ids such as
    ``fillets_cs_m``); empty takes all.
    """

    debian_dir: str = ""
    targets: Tuple[str, ...] = ()
    target_minutes: float = 0.0
    other_minutes: float = 0.0
    noise_minutes: float = 0.0
    utterance_seconds: Tuple[float, float] = (4.0, 12.0)
    pause_seconds: Tuple[float, float] = (0.1, 0.4)
    scene_seconds: Tuple[float, float] = (6.0, 12.0)
    seed: int = 0

    def resolved_dir(self) -> Path:
        return Path(self.debian_dir).absolute() if self.debian_dir else inventory.default_debian_dir()

    def validate(self) -> None:
        lo, hi = self.utterance_seconds
        if not 0 < lo <= hi:
            raise ValueError(f"utterance_seconds must be 0 < min <= max, got {self.utterance_seconds}")
        if min(self.target_minutes, self.other_minutes, self.noise_minutes) < 0:
            raise ValueError("target_minutes, other_minutes and noise_minutes must be >= 0 (0: all)")
        known = {v for v, _ in target_voice_ids()}
        unknown = sorted(set(self.targets) - known)
        if unknown:
            raise ValueError(f"unknown target voice(s) {unknown}; choose from {sorted(known)}")

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        d["debian_dir"] = str(self.resolved_dir())
        return d


def voice_id(family: inventory.VoiceFamily, voice: str) -> str:
    """Speaker id: lower case, no '-' (keys are '<speaker>-<index>')."""
    return re.sub(r"[^a-z0-9_]", "_", f"{family.prefix}_{voice}".lower())


def target_voice_ids() -> List[Tuple[str, inventory.VoiceFamily]]:
    return [(voice_id(f, v), f) for f in inventory.VOICE_FAMILIES if f.role == "target" for v in f.voices or ()]


def _pause(rng: np.random.Generator, cfg: DebianConfig) -> np.ndarray:
    return np.zeros(int(rng.uniform(*cfg.pause_seconds) * SAMPLE_RATE), dtype=np.float32)


def _decoded(paths: Sequence[Path], rejected: List[Tuple[str, str]],
             enough: Callable[[], bool]) -> Iterator[Tuple[Path, np.ndarray]]:
    """(path, 16-kHz clip) for each readable path, until ``enough()``; unreadable ones go to
    ``rejected``. ``enough`` is asked before each file, so nothing past the cap is decoded."""
    for path in paths:
        if enough():
            return
        try:
            clip = load_audio(path)
        except AudioError as err:
            rejected.append((err.path, err.reason))
            continue
        yield path, clip


def _voice_job(job) -> Tuple[List[Item], List[Tuple[str, str]]]:
    """(speaker id, clip paths, minute cap, cfg, out dir) -> (utterance Items, rejections)."""
    spk, paths, minutes, cfg, out_dir = job
    rng = derive_rng(cfg.seed, "debian_voice", spk)
    lo, hi = (int(s * SAMPLE_RATE) for s in cfg.utterance_seconds)
    cap = int(minutes * 60 * SAMPLE_RATE) if minutes > 0 else None
    items: List[Item] = []
    rejected: List[Tuple[str, str]] = []
    pending: List[np.ndarray] = []
    total = 0

    def flush() -> None:
        nonlocal total
        x = np.concatenate(pending)
        pending.clear()
        for start in range(0, len(x), hi):
            piece = x[start:start + hi]
            if len(piece) < lo:
                break
            key = f"{spk}-{len(items):05d}"
            path = out_dir / spk / f"{key}.wav"
            write_wav(path, fit_peak(piece, peak=0.99)[0])
            items.append(Item(key, str(path), len(piece) / SAMPLE_RATE, spk))
            total += len(piece)

    for _, clip in _decoded(paths, rejected, lambda: cap is not None and total >= cap):
        if pending:
            pending.append(_pause(rng, cfg))
        pending.append(clip)
        if sum(len(p) for p in pending) >= lo:
            flush()
    if pending and sum(len(p) for p in pending) >= lo:
        flush()
    return items, rejected


def _level(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) + 1e-9
    gain_db = NOISE_RMS_DB + rng.uniform(-5.0, 5.0)
    return (clip * (10 ** (gain_db / 20) / rms)).astype(np.float32)


def _noise_job(job) -> Tuple[Dict[str, List[Item]], List[Tuple[str, str]]]:
    """(group, clip paths, minute cap, cfg, out dir) -> ({bank: scene Items}, rejections)."""
    group, paths, minutes, cfg, out_dir = job
    rng = derive_rng(cfg.seed, "debian_noise", group.name)
    clips, rejected, total = [], [], 0
    cap = int(minutes * 60 * SAMPLE_RATE) if minutes > 0 else None
    longest = int(cfg.scene_seconds[1] * SAMPLE_RATE)
    for path, clip in _decoded(paths, rejected, lambda: cap is not None and total >= cap):
        if len(clip) > MAX_NOISE_CLIP_SECONDS * SAMPLE_RATE:
            rejected.append((str(path), f"lasts {len(clip) / SAMPLE_RATE:.0f} s: music, not an effect "
                                        f"(noise clips are at most {MAX_NOISE_CLIP_SECONDS:g} s)"))
            continue
        # Long ambiences are cut to scene length so one file cannot fill a whole bank.
        for start in range(0, len(clip), longest):
            piece = clip[start:start + longest]
            if len(piece) >= SAMPLE_RATE // 10:
                clips.append(_level(piece, rng))
                total += len(piece)
    order = rng.permutation(len(clips))
    banks: Dict[str, List[Item]] = {}
    start = 0
    for bank, count in zip((b for b, _ in BANK_SHARES[group.family]), bank_counts(group.family, len(clips))):
        banks[bank] = _scenes(bank, group.name, [clips[i] for i in order[start:start + count]], rng, cfg, out_dir)
        start += count
    return banks, rejected


def bank_counts(family: str, clips: int) -> List[int]:
    """Clips per bank of ``family``: its shares of ``clips``, at least one each while clips last."""
    shares = BANK_SHARES[family]
    counts = [0] + [max(1, int(round(share * clips))) for _, share in shares[1:]]
    for i in range(1, len(counts)):
        counts[i] = min(counts[i], max(0, clips - 1 - sum(counts[1:i])))
    counts[0] = clips - sum(counts)
    return counts


def _scenes(bank: str, name: str, clips: List[np.ndarray], rng: np.random.Generator, cfg: DebianConfig,
            out_dir: Path) -> List[Item]:
    items: List[Item] = []
    pending: List[np.ndarray] = []
    goal = int(rng.uniform(*cfg.scene_seconds) * SAMPLE_RATE)

    def flush() -> None:
        x = fit_peak(np.concatenate(pending), peak=0.99)[0]
        pending.clear()
        key = f"{bank}-{name}-{len(items):04d}"
        path = out_dir / bank / f"{key}.wav"
        write_wav(path, x)
        items.append(Item(key, str(path), len(x) / SAMPLE_RATE, name))

    for clip in clips:
        if pending:
            pending.append(np.zeros(int(rng.uniform(0.0, 0.25) * SAMPLE_RATE), dtype=np.float32))
        pending.append(clip)
        if sum(len(p) for p in pending) >= goal:
            flush()
            goal = int(rng.uniform(*cfg.scene_seconds) * SAMPLE_RATE)
    # The remainder becomes a scene of its own when nothing else would exist or it is long enough.
    if pending and (not items or sum(len(p) for p in pending) >= cfg.scene_seconds[0] * SAMPLE_RATE / 2):
        flush()
    return items


def _voices(debian_dir: Path, cfg: DebianConfig) -> Dict[str, Tuple[inventory.VoiceFamily, List[Path]]]:
    found: Dict[str, Tuple[inventory.VoiceFamily, List[Path]]] = {}
    for family in inventory.VOICE_FAMILIES:
        for path, voice in inventory.matching_files(debian_dir, family.package, family.pattern, family.exclude):
            if family.voices is not None and voice not in family.voices:
                continue
            spk = voice_id(family, voice)
            if family.role == "target" and cfg.targets and spk not in cfg.targets:
                continue
            found.setdefault(spk, (family, []))[1].append(path)
    return found


def build_sources(out: Path, cfg: DebianConfig, nj: int, rejections: Rejections) -> Sources:
    """Decode the packages' audio under ``out/audio`` and return the corpus Sources."""
    inventory.check_inventory()
    debian_dir = cfg.resolved_dir()
    voices = _voices(debian_dir, cfg)
    speech_dir, noise_dir = (out / "audio" / "speech").absolute(), (out / "audio" / "noise").absolute()
    jobs = [("voice", (spk, paths, cfg.target_minutes if fam.role == "target" else cfg.other_minutes,
                       cfg, speech_dir)) for spk, (fam, paths) in sorted(voices.items())]
    for group in inventory.NOISE_GROUPS:
        paths = [p for p, _ in inventory.matching_files(debian_dir, group.package, group.pattern, group.exclude)]
        if not paths:
            raise ValueError(f"noise group {group.name}: no file of {group.package} matches {group.pattern}")
        jobs.append(("noise", (group, paths, cfg.noise_minutes, cfg, noise_dir)))
    # Longest first, so the workers finish together.
    jobs.sort(key=lambda j: -len(j[1][1]))
    logging.info("debian_real corpus from %s: %d voices, %d noise groups, %d worker(s)",
                 debian_dir, len(voices), len(inventory.NOISE_GROUPS), nj)
    speakers: Dict[str, List[Item]] = {}
    noise: Dict[str, List[Item]] = {b: [] for shares in BANK_SHARES.values() for b, _ in shares}
    for (kind, _), (result, rejected) in zip(jobs, parallel_map(_run, jobs, nj, desc="debian_real corpus")):
        for path, reason in rejected:
            rejections.add(path, reason)
        if kind == "voice":
            if result:
                speakers[result[0].label] = result
        else:
            for bank, items in result.items():
                noise[bank].extend(items)
    for bank in noise:
        noise[bank].sort(key=lambda i: i.key)
    roles: Dict[str, List[str]] = {"target": [], "validation": [], "generalist": []}
    info: Dict[str, dict] = {}
    versions = inventory.unpacked_versions(debian_dir, inventory.packages())
    for spk, (family, _) in sorted(voices.items()):
        if spk not in speakers:
            logging.warning("voice %s: no utterance of %g s or more; left out", spk, cfg.utterance_seconds[0])
            continue
        roles[family.role].append(spk)
        info[spk] = {"package": family.package, "package_version": versions[family.package],
                     "voice": family.description}
    return Sources("debian_real", speakers, roles, noise, info, provenance=versions)


def _run(job):
    kind, payload = job
    return (_voice_job if kind == "voice" else _noise_job)(payload)
