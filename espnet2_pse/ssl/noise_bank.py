"""Random noise crops from a Kaldi-style ``wav.scp`` for on-the-fly mixing."""

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import soundfile
import torch

# Banks up to this many seconds are held in memory; larger ones (FSD50K) are read per crop.
_IN_MEMORY_SECONDS = 3 * 3600


class NoiseBank:
    """Noise clips listed in ``scp`` (one wav.scp, or a list of them pooled into one bank),
    sampled as random crops of a requested length.

    Clips shorter than a crop are looped, as a continuous background would be.
    Loading happens on the first :meth:`sample` call, so building a model for inference
    never needs the noise files.
    """

    def __init__(self, scp: Union[str, Sequence[str]], sample_rate: int = 16000, role: str = "noise"):
        self.scps = [scp] if isinstance(scp, (str, Path)) else list(scp)
        if not self.scps:
            raise ValueError(f"{role} bank: no scp file given")
        self.scp = ", ".join(str(s) for s in self.scps)
        self.sample_rate = sample_rate
        self.role = role
        self._paths: Optional[List[str]] = None
        self._lengths: Optional[np.ndarray] = None
        self._audio: Optional[List[np.ndarray]] = None

    def _load(self) -> None:
        paths, lengths = [], []
        for scp in self.scps:
            self._read_scp(Path(scp), paths, lengths)
        if not paths:
            raise ValueError(f"{self.role} bank: '{self.scp}' lists no files")
        self._paths, self._lengths = paths, np.asarray(lengths)
        if self._lengths.sum() <= _IN_MEMORY_SECONDS * self.sample_rate:
            self._audio = [self._read(p) for p in paths]
        logging.info(
            "%s bank: %d clips, %.1f min from %s",
            self.role, len(paths), self._lengths.sum() / self.sample_rate / 60, self.scp,
        )

    def _read_scp(self, scp: Path, paths: List[str], lengths: List[int]) -> None:
        if not scp.is_file():
            raise FileNotFoundError(f"{self.role} bank: scp file '{scp}' does not exist")
        for lineno, line in enumerate(scp.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{scp}:{lineno}: expected 'key path', got '{line}'")
            try:
                info = soundfile.info(parts[1])
            except Exception as e:
                raise ValueError(f"{scp}:{lineno}: cannot read '{parts[1]}': {e}") from None
            if info.samplerate != self.sample_rate:
                raise ValueError(
                    f"{scp}:{lineno}: '{parts[1]}' is {info.samplerate} Hz, "
                    f"expected {self.sample_rate} Hz (run data preparation to resample)"
                )
            if info.frames == 0:
                raise ValueError(f"{scp}:{lineno}: '{parts[1]}' is empty")
            paths.append(parts[1])
            lengths.append(info.frames)

    @staticmethod
    def _read(path: str, start: int = 0, frames: int = -1) -> np.ndarray:
        audio, _ = soundfile.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        return audio.mean(axis=1)

    def __len__(self) -> int:
        if self._paths is None:
            self._load()
        return len(self._paths)

    def sample(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, length) float32 crops from random clips at random offsets."""
        if self._paths is None:
            self._load()
        index = torch.randint(len(self._paths), (batch,), generator=generator).tolist()
        crops = np.empty((batch, length), dtype=np.float32)
        for row, i in enumerate(index):
            clip_len = int(self._lengths[i])
            offset = int(torch.randint(clip_len, (1,), generator=generator))
            clip = self._audio[i] if self._audio is not None else self._read(self._paths[i])
            # Index only the crop (wrapping around the clip), not a rolled copy of the clip.
            crops[row] = clip[(offset + np.arange(length)) % clip_len]
        return torch.from_numpy(crops)
