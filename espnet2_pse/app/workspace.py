"""The app's work dir: uploaded recordings, models, enhanced files and live captures.

Everything the server writes goes under one root (``pse-app --work_dir``), and every path it
serves is resolved and checked to lie under it: names from the browser are never used as
paths, only as labels turned into safe file names.

    <root>/recordings/{noisy,clean}/*.wav   uploads, checked and stored as 16 kHz mono PCM_16
    <root>/personalize/                     personalize's work dir (resumable)
    <root>/models/personal.zip              the personal model
    <root>/enhanced/<id>/                   one enhanced upload: input, enhanced.wav, spectrograms
    <root>/live/<id>/                       one live session: input.wav, output.wav
    <root>/exports/                         ONNX exports
    <root>/tmp/                             uploads being checked
"""

import hashlib
import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf

from espnet2_pse.data.audio import AudioError, fit_peak, load_audio, write_wav
from espnet2_pse.data.user import UserConfig
from espnet2_pse.scoring.files import atomic_write_text

KINDS = ("noisy", "clean")
# personalize skips shorter recordings: refuse them at the upload instead.
MIN_RECORDING_SECONDS = UserConfig.min_seconds


class Workspace:
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        for sub in ("tmp", "models", "enhanced", "live", "exports", *(f"recordings/{k}" for k in KINDS)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def inside(self, relative: str) -> Path:
        """``root / relative`` if it stays under the root (no ``..``, no absolute paths, no
        links out), else PermissionError."""
        path = (self.root / relative).resolve()
        if path != self.root and self.root not in path.parents:
            raise PermissionError(f"{relative}: outside the app's work dir")
        return path

    def url(self, path: Path) -> str:
        return "/files/" + path.resolve().relative_to(self.root).as_posix()

    def recordings_dir(self, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown recording kind {kind!r}; use one of {', '.join(KINDS)}")
        return self.root / "recordings" / kind

    def tmp_file(self, filename: str) -> Path:
        """A fresh temporary path keeping the upload's suffix (libsndfile reads by content,
        but the suffix helps it with headerless formats)."""
        suffix = Path(filename).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""
        return self.root / "tmp" / f"{uuid.uuid4().hex}{suffix}"

    def add_recording(self, kind: str, filename: str, upload: Path) -> dict:
        """Check an uploaded file (already written to ``upload`` under tmp/) and store it as a
        recording; the upload is removed either way.

        Raises:
            AudioError: not audio, empty, silent, clipped or too short; the path in the
                message is the browser's file name.
        """
        folder = self.recordings_dir(kind)
        try:
            x = load_upload(upload, filename, min_seconds=MIN_RECORDING_SECONDS)
            target = _unused(folder, safe_stem(filename), ".wav")
            write_wav(target, fit_peak(x, peak=0.99)[0])
        finally:
            upload.unlink(missing_ok=True)
        return {"name": target.name, "seconds": round(len(x) / 16000, 2)}

    def recordings(self, kind: str) -> List[dict]:
        return [{"name": p.name, "seconds": round(sf.info(str(p)).duration, 2)}
                for p in sorted(self.recordings_dir(kind).glob("*.wav"))]

    def has_recordings(self, kind: str) -> bool:
        """Whether any recording of ``kind`` is there (without reading their headers)."""
        return any(self.recordings_dir(kind).glob("*.wav"))

    def remove_recording(self, kind: str, name: str) -> None:
        path = self.recordings_dir(kind) / Path(name).name
        if not path.is_file():
            raise FileNotFoundError(f"no {kind} recording named {name!r}")
        path.unlink()

    def fingerprint(self) -> str:
        """Changes whenever a recording is added or removed (a new personalization is then needed)."""
        digest = hashlib.sha1()
        for kind in KINDS:
            for p in sorted(self.recordings_dir(kind).glob("*.wav")):
                digest.update(f"{kind}/{p.name}/{p.stat().st_size}\n".encode())
        return digest.hexdigest()

    def new_item(self, area: str) -> Path:
        """A fresh folder under enhanced/ or live/."""
        folder = self.root / area / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder


def load_upload(upload: Path, filename: str, **checks) -> np.ndarray:
    """:func:`load_audio` of an upload, its errors naming the browser's file name (never the
    server's temporary path)."""
    try:
        return load_audio(upload, **checks)
    except AudioError as err:
        raise AudioError(filename, err.reason.replace(str(upload), filename)) from None


def safe_stem(filename: str) -> str:
    """A file stem made of letters, digits, ``-`` and ``_`` from a browser's file name."""
    stem = Path(filename.replace("\\", "/")).stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:60]
    return stem or "recording"


def _unused(folder: Path, stem: str, suffix: str) -> Path:
    path, k = folder / f"{stem}{suffix}", 1
    while path.exists():
        path, k = folder / f"{stem}-{k}{suffix}", k + 1
    return path


def write_json(path: Path, data: Dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def read_json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
