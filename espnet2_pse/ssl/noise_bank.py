"""Random noise crops from a Kaldi-style ``wav.scp`` for on-the-fly mixing."""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

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

    ``labels`` (scp key -> label, e.g. a Kaldi utt2spk) lets :meth:`sample` avoid given labels
    per row: an interfering talker must never be the target speaker.
    """

    def __init__(self, scp: Union[str, Sequence[str]], sample_rate: int = 16000, role: str = "noise",
                 labels: Optional[Dict[str, str]] = None):
        self.scps = [scp] if isinstance(scp, (str, Path)) else list(scp)
        if not self.scps:
            raise ValueError(f"{role} bank: no scp file given")
        self.scp = ", ".join(str(s) for s in self.scps)
        self.sample_rate = sample_rate
        self.role = role
        self.labels = labels
        self._paths: Optional[List[str]] = None
        self._clip_labels: Optional[List[str]] = None
        self._lengths: Optional[np.ndarray] = None
        self._audio: Optional[List[np.ndarray]] = None

    def _load(self) -> None:
        paths, lengths, keys = [], [], []
        for scp in self.scps:
            self._read_scp(Path(scp), paths, lengths, keys)
        if not paths:
            raise ValueError(f"{self.role} bank: '{self.scp}' lists no files")
        if self.labels is not None:
            missing = [k for k in keys if k not in self.labels]
            if missing:
                raise ValueError(f"{self.role} bank: no label for {len(missing)} key(s) of '{self.scp}', "
                                 f"e.g. '{missing[0]}' (is the utt2spk of another data dir?)")
            self._clip_labels = [self.labels[k] for k in keys]
        self._paths, self._lengths = paths, np.asarray(lengths)
        if self._lengths.sum() <= _IN_MEMORY_SECONDS * self.sample_rate:
            self._audio = [self._read(p) for p in paths]
        logging.info(
            "%s bank: %d clips, %.1f min from %s",
            self.role, len(paths), self._lengths.sum() / self.sample_rate / 60, self.scp,
        )

    def _read_scp(self, scp: Path, paths: List[str], lengths: List[int], keys: List[str]) -> None:
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
            keys.append(parts[0])
            paths.append(parts[1])
            lengths.append(info.frames)

    def _redraw_avoided(self, index: List[int], avoid: Sequence[str], generator: torch.Generator) -> List[int]:
        if self._clip_labels is None:
            raise ValueError(f"{self.role} bank: avoiding labels needs the bank's labels (utt2spk)")
        if len(avoid) != len(index):
            raise ValueError(f"{self.role} bank: {len(avoid)} labels to avoid for a batch of {len(index)}")
        for row, label in enumerate(avoid):
            if self._clip_labels[index[row]] != label:
                continue
            allowed = [i for i, clip_label in enumerate(self._clip_labels) if clip_label != label]
            if not allowed:
                raise ValueError(f"{self.role} bank: every clip of '{self.scp}' is labelled '{label}'")
            # Uniform over the allowed clips: one more generator draw, no rejection loop.
            index[row] = allowed[int(torch.randint(len(allowed), (1,), generator=generator))]
        return index

    @staticmethod
    def _read(path: str, start: int = 0, frames: int = -1) -> np.ndarray:
        audio, _ = soundfile.read(path, start=start, frames=frames, dtype="float32", always_2d=True)
        return audio.mean(axis=1)

    def __len__(self) -> int:
        if self._paths is None:
            self._load()
        return len(self._paths)

    def sample(self, batch: int, length: int, generator: torch.Generator,
               avoid: Optional[Sequence[str]] = None) -> torch.Tensor:
        """(batch, length) float32 crops from random clips at random offsets; with ``avoid``
        (one label per row, needs ``labels``), row i never comes from a clip labelled avoid[i]."""
        if self._paths is None:
            self._load()
        index = torch.randint(len(self._paths), (batch,), generator=generator).tolist()
        if avoid is not None:
            index = self._redraw_avoided(index, avoid, generator)
        crops = np.empty((batch, length), dtype=np.float32)
        for row, i in enumerate(index):
            clip_len = int(self._lengths[i])
            offset = int(torch.randint(clip_len, (1,), generator=generator))
            clip = self._audio[i] if self._audio is not None else self._read(self._paths[i])
            # Index only the crop (wrapping around the clip), not a rolled copy of the clip.
            crops[row] = clip[(offset + np.arange(length)) % clip_len]
        return torch.from_numpy(crops)
