"""The parts of a user's build (noisy, clean, test; see :mod:`espnet2_pse.data.user`): what
each one writes, the marker that records the settings it was made with, and how a part is
found current, unfinished or cleared."""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

from espnet2_pse.data.audio import Rejections


@dataclass(frozen=True)
class Part:
    """One piece of a user's build, made, kept and removed independently of the others.

    ``switch`` is the UserConfig folder that turns it on; ``settings`` the UserConfig fields it
    depends on (what its marker ``speakers/<user>/.<name>.done`` holds); ``data_dirs`` live
    under ``speakers/<user>`` and ``audio_dirs`` under ``audio/user/<user>``.
    """

    name: str
    switch: str
    settings: Tuple[str, ...]
    data_dirs: Tuple[str, ...]
    audio_dirs: Tuple[str, ...]


# The cutting and mixing settings that both recording parts use.
_SHARED = ("name", "segment_seconds", "min_seconds", "val_mixtures", "mixture_seconds", "inject_snr", "seed")
NOISY = Part(
    "noisy",
    "noisy_dir",
    ("noisy_dir", "preval_seconds") + _SHARED,
    data_dirs=("pretrain", "preval"),
    audio_dirs=("noisy", "mix/preval"),
)
CLEAN = Part(
    "clean",
    "clean_dir",
    ("clean_dir", "fsl_val_seconds") + _SHARED,
    data_dirs=("fsl_train", "fsl_val"),
    audio_dirs=("clean", "mix/fsl_val"),
)
TEST = Part("test", "test_dir", ("name", "test_dir", "min_seconds"), ("test",), ("test",))
PARTS = (NOISY, CLEAN, TEST)


def settings_of(part: Part, full: dict) -> dict:
    """The part's own settings out of a whole UserConfig dict, in the config's field order."""
    return {k: v for k, v in full.items() if k in part.settings}


def marker(base: Path, part: Part) -> Path:
    return base / f".{part.name}.done"


def rejected_path(base: Path, part: Part) -> Path:
    # Each part keeps its own rejections so that rejected.txt can be rebuilt from kept parts.
    return base / f".{part.name}.rejected.txt"


def read_yaml(path: Path) -> Optional[dict]:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def read_rejections(path: Path) -> List[Tuple[str, str]]:
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_rejections(path: Path, items: List[Tuple[str, str]]) -> None:
    rej = Rejections()
    rej.items = list(items)  # already logged when they were found
    rej.write(path)


def differences(old: dict, new: dict) -> str:
    """'key: old -> new' for every setting that differs, for error messages."""

    def shown(d: dict, k: str) -> str:
        return repr(d[k]) if k in d else "(unset)"

    keys = list(new) + [k for k in old if k not in new]
    return ", ".join(f"{k}: {shown(old, k)} -> {shown(new, k)}" for k in keys if old.get(k) != new.get(k))


def is_current(base: Path, part: Part, settings: dict) -> bool:
    return read_yaml(marker(base, part)) == settings and all(
        (base / d / "wav.scp").is_file() for d in part.data_dirs
    )


def has_files(base: Path, audio: Path, part: Part) -> bool:
    return (
        marker(base, part).exists()
        or any((base / d).exists() for d in part.data_dirs)
        or any((audio / d).exists() for d in part.audio_dirs)
    )


def clear_part(base: Path, audio: Path, part: Part) -> None:
    """Remove a part: its marker first, so that a crash midway leaves it unfinished, not done."""
    marker(base, part).unlink(missing_ok=True)
    rejected_path(base, part).unlink(missing_ok=True)
    for d in part.data_dirs:
        shutil.rmtree(base / d, ignore_errors=True)
        # write_data_dir's temporary and replaced copies, left behind by a killed run.
        for stray in list(base.glob(f".{d}.tmp*")) + list(base.glob(f".{d}.old*")):
            shutil.rmtree(stray, ignore_errors=True)
    for d in part.audio_dirs:
        shutil.rmtree(audio / d, ignore_errors=True)
