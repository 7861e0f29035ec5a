"""File helpers of the scoring tools, also used by the package's caches: checked audio loading,
atomic writes (a crash never leaves a half-written table, summary or plot) and fingerprints
of the files that cached work was derived from.

Scp lists are read with :func:`espnet2_pse.data.kaldi_dir.read_table`. Audio is not read with
the data layer's ``load_audio``: that one downmixes, resamples and rejects silent or clipped
files, while scoring must judge each file exactly as it is and refuse what it cannot judge.
"""

import hashlib
import os
from pathlib import Path
from typing import Callable, Tuple, Union

import numpy as np

PathLike = Union[str, Path]


def load_mono(path: PathLike, key: str = "") -> Tuple[np.ndarray, int]:
    """Load a mono audio file as float64 in [-1, 1].

    Returns:
        ((T,) samples, sample rate in Hz).
    Raises:
        ValueError: unreadable, multichannel, empty or non-finite audio; the message names the
            utterance key and the file.
    """
    import soundfile

    where = f"utterance '{key}' ({path})" if key else str(path)
    if not Path(path).is_file():
        raise ValueError(f"{where}: file does not exist")
    try:
        samples, fs = soundfile.read(str(path), dtype="float64", always_2d=True)
    except Exception as err:  # soundfile raises several types for missing/corrupt files
        raise ValueError(f"{where}: cannot read audio: {err}") from None
    if samples.shape[1] != 1:
        raise ValueError(f"{where}: expected mono audio, got {samples.shape[1]} channels")
    samples = samples[:, 0]
    if samples.size == 0:
        raise ValueError(f"{where}: audio is empty")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{where}: audio contains NaN or infinite samples")
    return samples, int(fs)


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary name keeps the suffix, so writers that pick a format from it (matplotlib)
    still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A pid-unique hidden name in the same directory: the rename is atomic on one file
    # system, and the file gets the usual umask permissions (mkstemp would make it 0600).
    tmp = str(path.parent / f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_float_wav(path: PathLike, x: np.ndarray, sample_rate: int) -> Path:
    """(T,) samples as a 32-bit float WAV (exact samples, no clipping), written atomically."""
    import soundfile

    return atomic_write(path, lambda tmp: soundfile.write(tmp, np.asarray(x, np.float32), sample_rate,
                                                         subtype="FLOAT", format="WAV"))


def files_fingerprint(*paths: PathLike, content: bool = False) -> str:
    """Changes when any file's path, size or modification time does, or with ``content`` (files
    unpacked anew on every run, as a packed model is), when its bytes do: whether work derived
    from the files can be reused."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if content:
            digest.update(path.read_bytes())
        else:
            stat = path.stat()
            digest.update(f"{path.resolve()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, write)
