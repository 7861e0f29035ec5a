"""Kaldi-style data directories: reading, validated atomic writing.

A data dir holds "key value" tables: ``wav.scp`` (and ``spk1.scp`` where a clean reference
exists) map keys to absolute paths of 16 kHz mono PCM_16 WAV files; ``utt2spk``/``spk2utt``
group keys by speaker; ``utt2dur`` gives seconds; extra tables (``utt2snr``, ``utt2family``)
carry labels. Keys are unique, sorted, and start with their speaker id (Kaldi's sort rule).

:func:`write_data_dir` builds the dir under a temporary name, validates it (every table has
the same keys, every referenced file exists and decodes in the working format) and only then
renames it into place, so a dir that exists is always complete.
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np
import soundfile as sf

from espnet2_pse.data.audio import SAMPLE_RATE, write_wav

AUDIO_TABLES = ("wav.scp", "spk1.scp")
# Tables derived by write_data_dir itself; callers pass the rest through ``extra``.
_DERIVED = ("spk2utt", "utt2dur")

PathLike = Union[str, os.PathLike]


class DataDirError(ValueError):
    """A data dir or table is malformed; the message names the file and key."""


def read_table(path: PathLike) -> Dict[str, str]:
    """Read "key value" lines into a dict, refusing duplicate keys and lines without a value."""
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: table not found")
    table: Dict[str, str] = {}
    with open(path, encoding="utf-8") as fp:
        for lineno, line in enumerate(fp, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise DataDirError(f"{path}:{lineno}: key '{parts[0]}' has no value")
            key, value = parts
            if key in table:
                raise DataDirError(f"{path}:{lineno}: duplicate key '{key}'")
            table[key] = value
    return table


def speaker_indices(utt2spk: Mapping[str, str]) -> Dict[str, int]:
    """Utterance -> index of its speaker among the sorted speaker names (0..N-1)."""
    index = {name: i for i, name in enumerate(sorted(set(utt2spk.values())))}
    return {utt: index[spk] for utt, spk in utt2spk.items()}


def write_speaker_index(data_dir: PathLike) -> Path:
    """``<data_dir>/utt2spk_index`` from its utt2spk (:func:`speaker_indices`): the speaker of each
    training example as an integer (ESPnet data type ``text_int``), for objectives that must
    know it (a talker bank holding the training voices avoids the example's own)."""
    out = Path(data_dir) / "utt2spk_index"
    write_table(out, speaker_indices(read_table(Path(data_dir) / "utt2spk")))
    return out


def write_table(path: PathLike, table: Mapping[str, object]) -> None:
    """Write a dict as sorted "key value" lines (temporary name, then rename)."""
    path = Path(path)
    lines = []
    for key in sorted(table):
        value = str(table[key])
        if not key or any(c.isspace() for c in key):
            raise DataDirError(f"{path}: invalid key {key!r} (empty or containing whitespace)")
        if "\n" in value or not value.strip():
            raise DataDirError(f"{path}: invalid value for key '{key}': {value!r}")
        lines.append(f"{key} {value}\n")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class DataDir:
    """A data dir read back into memory: ``tables[name][key] -> value`` (``spk2utt`` excluded)."""

    path: Path
    tables: Dict[str, Dict[str, str]] = field(default_factory=dict)

    @property
    def keys(self):
        return sorted(self.tables["wav.scp"])

    @property
    def wav(self) -> Dict[str, str]:
        return self.tables["wav.scp"]

    @property
    def spk1(self) -> Dict[str, str]:
        return self.tables["spk1.scp"]

    @property
    def utt2spk(self) -> Dict[str, str]:
        return self.tables["utt2spk"]

    @property
    def utt2dur(self) -> Dict[str, float]:
        return {k: float(v) for k, v in self.tables["utt2dur"].items()}

    def total_seconds(self) -> float:
        return sum(self.utt2dur.values())


def _duration_of(path: str, where: str) -> float:
    """Seconds of a working-format WAV file; raises DataDirError naming ``where``."""
    try:
        info = sf.info(path)
    except Exception as err:
        raise DataDirError(f"{where}: {path} cannot be decoded ({err})") from None
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise DataDirError(
            f"{where}: {path} is {info.samplerate} Hz with {info.channels} channel(s); "
            f"expected {SAMPLE_RATE} Hz mono"
        )
    if info.frames == 0:
        raise DataDirError(f"{where}: {path} is empty")
    return info.frames / info.samplerate


def _check(
    dirpath: Path, tables: Dict[str, Dict[str, str]], final: Optional[Path] = None
) -> Dict[str, float]:
    """Validate tables of a data dir; returns key -> seconds of wav.scp's files.

    Paths under ``final`` (the dir's name after the rename) are looked up in ``dirpath``.
    """
    wav = tables["wav.scp"]
    if not wav:
        raise DataDirError(f"{dirpath}/wav.scp: no entries")
    keys = set(wav)
    for name, table in tables.items():
        missing = sorted(keys - set(table))
        extra = sorted(set(table) - keys)
        if missing:
            raise DataDirError(f"{dirpath}/{name}: no entry for key '{missing[0]}' listed in wav.scp")
        if extra:
            raise DataDirError(f"{dirpath}/{name}: key '{extra[0]}' is not in wav.scp")
    for key, spk in tables["utt2spk"].items():
        if not key.startswith(spk):
            raise DataDirError(
                f"{dirpath}/utt2spk: key '{key}' does not start with its speaker id '{spk}' "
                "(Kaldi sorting needs the speaker id as prefix)"
            )
    prefix = str(final) + os.sep if final is not None else None
    durations: Dict[str, float] = {}
    for name in AUDIO_TABLES:
        for key, path in tables.get(name, {}).items():
            where = f"{dirpath}/{name} key '{key}'"
            if not os.path.isabs(path):
                raise DataDirError(f"{where}: path {path} is not absolute")
            local = path
            if prefix is not None and path.startswith(prefix):
                local = str(dirpath / path[len(prefix) :])
            if not os.path.isfile(local):
                raise DataDirError(f"{where}: {path} does not exist")
            seconds = _duration_of(local, where)
            if name == "wav.scp":
                durations[key] = seconds
            elif abs(seconds - durations[key]) > 1e-3:
                raise DataDirError(
                    f"{where}: reference lasts {seconds:.3f} s but wav.scp's file {durations[key]:.3f} s"
                )
    return durations


def write_data_dir(
    path: PathLike,
    wav: Mapping[str, str],
    utt2spk: Mapping[str, str],
    spk1: Union[None, str, Mapping[str, str]] = None,
    extra: Optional[Mapping[str, Mapping[str, object]]] = None,
    new_audio: Optional[Mapping[str, np.ndarray]] = None,
) -> DataDir:
    """Validate and atomically write a data dir; ``utt2dur`` and ``spk2utt`` are derived.

    Args:
        path: final directory; replaced atomically if it exists.
        wav: key -> absolute audio path (``wav.scp``).
        utt2spk: key -> speaker id.
        spk1: key -> clean reference path, or "same" for ``spk1.scp == wav.scp``, or None.
        extra: more tables, e.g. {"utt2snr": {key: dB}}.
        new_audio: relative path inside the dir -> (T,) signal, written with the dir (for
            files that belong to it, such as cut copies); tables refer to them by their final path.
    Returns:
        The written dir as a :class:`DataDir`.
    """
    path = Path(path).absolute()
    tables: Dict[str, Dict[str, str]] = {"wav.scp": dict(wav), "utt2spk": dict(utt2spk)}
    if isinstance(spk1, str):
        if spk1 != "same":
            raise ValueError(f"spk1 must be a mapping, 'same' or None, got {spk1!r}")
        tables["spk1.scp"] = dict(wav)
    elif spk1 is not None:
        tables["spk1.scp"] = dict(spk1)
    for name, table in (extra or {}).items():
        if name in tables or name in _DERIVED:
            raise ValueError(f"{path}: table {name} is written by write_data_dir itself")
        tables[name] = {k: str(v) for k, v in table.items()}

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for rel, signal in (new_audio or {}).items():
            write_wav(tmp / rel, signal)
        durations = _check(tmp, tables, final=path)
        tables["utt2dur"] = {k: f"{d:.4f}" for k, d in durations.items()}
        for name, table in tables.items():
            write_table(tmp / name, table)
        spk2utt: Dict[str, list] = {}
        for key in sorted(tables["utt2spk"]):
            spk2utt.setdefault(tables["utt2spk"][key], []).append(key)
        write_table(tmp / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DataDir(path, tables)


def replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, removing an older ``dst`` only after the new one is complete."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old)


def read_data_dir(path: PathLike, check_audio: bool = False) -> DataDir:
    """Read every known table of a data dir and check that they agree on the keys.

    With ``check_audio`` every referenced file is also opened (header only).
    """
    path = Path(path)
    if not (path / "wav.scp").is_file():
        raise DataDirError(f"{path}: not a data dir (no wav.scp)")
    tables: Dict[str, Dict[str, str]] = {}
    for f in sorted(path.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name != "spk2utt" and _is_table(f.name):
            tables[f.name] = read_table(f)
    if "utt2spk" not in tables:
        raise DataDirError(f"{path}: utt2spk is missing")
    if check_audio:
        _check(path, {k: v for k, v in tables.items() if k != "utt2dur"})
    else:
        wav = set(tables["wav.scp"])
        for name, table in tables.items():
            if set(table) != wav:
                key = sorted(wav ^ set(table))[0]
                raise DataDirError(
                    f"{path}/{name}: key '{key}' is in one of wav.scp/{name} but not the other"
                )
    return DataDir(path, tables)


def _is_table(name: str) -> bool:
    return name.endswith(".scp") or name.startswith("utt2")
