"""Audio reading with input checks, resampling, and atomic 16 kHz PCM_16 writing.

Every file that enters the data layer goes through :func:`load_audio`, which returns a mono
float32 signal at the working rate or raises :class:`AudioError` with a one-line reason.
Callers that can skip a bad file record it in a :class:`Rejections` list, which ends up in a
``rejected.txt`` beside the data it concerns.
"""

import logging
import os
from math import gcd
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

SAMPLE_RATE = 16000
# A sample counts as clipped at or above this magnitude (full scale is 1.0).
CLIP_LEVEL = 0.999
# Peak below which a file is treated as digital silence (-80 dBFS): mixing at an SNR is undefined.
SILENCE_PEAK = 1e-4
AUDIO_SUFFIXES = (".wav", ".flac")

PathLike = Union[str, os.PathLike]


class AudioError(ValueError):
    """A file cannot be used; ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Polyphase resampling (scipy) of (T,) or (T, C) along time; identity if rates match."""
    if orig_sr == new_sr:
        return x
    g = gcd(int(orig_sr), int(new_sr))
    return resample_poly(x, new_sr // g, orig_sr // g, axis=0).astype(np.float32)


def speed_perturb(x: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Kaldi's speed perturbation: ``x`` played ``factor`` times as fast, tempo and pitch together
    (read as if recorded at ``factor`` times the rate, then resampled back: 1/factor as long)."""
    return resample(x, int(round(factor * sample_rate)), sample_rate)


def load_audio(
    path: PathLike,
    sample_rate: int = SAMPLE_RATE,
    min_seconds: float = 0.0,
    max_clip_fraction: float = 0.01,
) -> np.ndarray:
    """Read, check, downmix and resample one file.

    Args:
        path: any format libsndfile reads (wav, flac, ...), any rate, any channel count.
        sample_rate: rate of the returned signal in Hz.
        min_seconds: shorter files (after resampling) are rejected.
        max_clip_fraction: reject if more than this fraction of samples sit at full scale.
    Returns:
        (T,) float32 mono signal at ``sample_rate``.
    Raises:
        AudioError: missing, unreadable, empty, non-finite, heavily clipped, silent or too short.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file does not exist")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types for corrupt input
        raise AudioError(path, f"cannot be decoded ({str(err).strip().splitlines()[0]})") from None
    if x.shape[0] == 0:
        raise AudioError(path, "is empty (0 samples)")
    if not np.isfinite(x).all():
        raise AudioError(path, "contains NaN or Inf samples")
    clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
    if clipped > max_clip_fraction:
        raise AudioError(
            path,
            f"is heavily clipped ({100 * clipped:.1f}% of samples at full scale, "
            f"limit {100 * max_clip_fraction:.1f}%)",
        )
    # Downmix by averaging channels: keeps the level of a signal present in every channel.
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    mono = resample(mono, sr, sample_rate)
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError(path, "is silent (peak below -80 dBFS)")
    seconds = len(mono) / sample_rate
    if seconds < min_seconds:
        raise AudioError(path, f"is shorter than {min_seconds:g} s ({seconds:.2f} s)")
    return mono


def write_wav(path: PathLike, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write (T,) float audio in [-1, 1] as mono PCM_16 WAV, via a temporary name and a rename."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{path}: expected a non-empty 1-D signal, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{path}: refusing to write NaN or Inf samples")
    peak = float(np.abs(x).max())
    if peak > 1.0:
        raise ValueError(f"{path}: peak {peak:.3f} would clip in PCM_16; scale the signal first")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), x, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def read_wav(path: PathLike) -> np.ndarray:
    """Read a file written by :func:`write_wav` as (T,) float32 (no checks; trusted input)."""
    x, _ = sf.read(str(path), dtype="float32")
    return x


def is_working_format(path: PathLike, sample_rate: int = SAMPLE_RATE) -> bool:
    """True if the file already is mono PCM_16 WAV at ``sample_rate`` (usable without a copy)."""
    try:
        info = sf.info(str(path))
    except Exception:
        return False
    return (
        info.format == "WAV"
        and info.subtype == "PCM_16"
        and info.channels == 1
        and info.samplerate == sample_rate
    )


def fit_peak(*signals: np.ndarray, peak: float = 0.9) -> List[np.ndarray]:
    """Scale all signals by one factor so the largest peak is at most ``peak`` (never up).

    One shared factor keeps the SNR between a mixture and its reference unchanged.
    """
    top = max(float(np.abs(s).max()) for s in signals)
    g = peak / top if top > peak else 1.0
    return [(s * g).astype(np.float32) for s in signals]


def find_audio_files(folder: PathLike) -> List[Path]:
    """Every .wav/.flac file (any case) under ``folder``, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


class Rejections:
    """Files skipped during preparation, each with a one-line reason."""

    def __init__(self) -> None:
        self.items: List[Tuple[str, str]] = []

    def add(self, path: PathLike, reason: str) -> None:
        logging.warning("skipping %s: %s", path, reason)
        self.items.append((str(path), reason))

    def add_error(self, err: AudioError) -> None:
        self.add(err.path, err.reason)

    def extend(self, other: "Rejections") -> None:
        self.items.extend(other.items)

    def __len__(self) -> int:
        return len(self.items)

    def write(self, path: PathLike) -> None:
        """Write ``<file>\\t<reason>`` lines (an empty file if nothing was rejected)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{p}\t{r}\n" for p, r in self.items), encoding="utf-8")
        os.replace(tmp, path)
