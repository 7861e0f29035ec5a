"""Fixed mixture sets written once to disk (test, validation), with their references.

Every method is scored on the same files: each mixture is a random crop of a speech
utterance (cycled over the pool in a seeded random order) plus a random crop of a noise file,
mixed with :func:`espnet2_pse.data.mixing.mix_at_snr` at an SNR drawn uniformly and rounded to
0.01 dB (the label written to ``utt2snr`` is the exact value used).

For pseudo-mixtures (SSL validation) the reference is the pseudo-source s~ = s + m, with the
premixture noise m at U(0, 15) dB against s, and the injection noise is mixed against s~
(the paper's rule). For a user's own recordings the recording itself is s~.
``utt2source`` records where every crop came from ("speech=<key>@<offset>s noise=..."), to
the sample, so any mixture can be rebuilt or audited.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet2_pse.data.audio import SAMPLE_RATE, fit_peak, read_wav, write_wav
from espnet2_pse.data.mixing import mix_at_snr


@dataclass(frozen=True)
class Item:
    """One audio file of a pool: key, absolute path, seconds, and a label (speaker or family)."""

    key: str
    path: str
    seconds: float
    label: str = ""


class _Cache:
    def __init__(self) -> None:
        self._data: Dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        if path not in self._data:
            self._data[path] = read_wav(path)
        return self._data[path]


def _crop(x: np.ndarray, length: int, rng: np.random.Generator, tile: bool) -> Tuple[np.ndarray, int]:
    """Random ``length``-sample crop; shorter input is tiled (noise) or zero-padded (speech)."""
    if len(x) < length:
        x = np.resize(x, length) if tile else np.pad(x, (0, length - len(x)))
        return x, 0
    offset = int(rng.integers(0, len(x) - length + 1))
    return x[offset : offset + length], offset


def _mix(source: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    s = torch.from_numpy(source.astype(np.float64))
    n = torch.from_numpy(noise.astype(np.float64))
    return mix_at_snr(s, n, snr).numpy()


def make_fixed_mixtures(
    out_audio: Path,
    name: str,
    speech: Sequence[Item],
    noise: Sequence[Item],
    count: int,
    rng: np.random.Generator,
    snr_range: Tuple[float, float],
    seconds: float = 4.0,
    premix: Optional[Sequence[Item]] = None,
    premix_snr_range: Tuple[float, float] = (0.0, 15.0),
) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str], Dict[str, Dict[str, str]]]:
    """Write ``count`` mixtures and their references under ``out_audio/{noisy,clean}/``.

    Args:
        name: middle part of the keys, ``<speaker>-<name><index>``.
        speech: pool of utterances; ``label`` is the speaker id.
        noise: injection noise pool.
        count: number of mixtures.
        snr_range: (low, high) dB of the injection SNR, against the reference.
        seconds: crop length.
        premix: if given, the reference is s + m with m from this pool at ``premix_snr_range``.
    Returns:
        (wav, spk1, utt2spk, extra) tables; extra has ``utt2snr`` (dB), ``utt2source`` and,
        with a premixture, ``utt2presnr``.
    """
    if not speech or not noise or (premix is not None and not premix):
        raise ValueError(f"{name}: empty speech or noise pool for fixed mixtures")
    length = int(round(seconds * SAMPLE_RATE))
    load = _Cache()
    speech_order = rng.permutation(len(speech))
    noise_order = rng.permutation(len(noise))
    premix_order = rng.permutation(len(premix)) if premix is not None else None
    wav: Dict[str, str] = {}
    spk1: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    extra: Dict[str, Dict[str, str]] = {"utt2snr": {}, "utt2source": {}}
    if premix is not None:
        extra["utt2presnr"] = {}
    for i in range(count):
        utt = speech[speech_order[i % len(speech)]]
        nz = noise[noise_order[i % len(noise)]]
        key = f"{utt.label}-{name}{i:04d}"
        s, s_off = _crop(load(utt.path), length, rng, tile=False)
        n, n_off = _crop(load(nz.path), length, rng, tile=True)
        source = f"speech={utt.key}@{s_off / SAMPLE_RATE:.5f}s noise={nz.key}@{n_off / SAMPLE_RATE:.5f}s"
        if premix is not None:
            pm = premix[premix_order[i % len(premix)]]
            m, m_off = _crop(load(pm.path), length, rng, tile=True)
            presnr = round(float(rng.uniform(*premix_snr_range)), 2)
            s = _mix(s, m, presnr)
            extra["utt2presnr"][key] = f"{presnr:.2f}"
            source += f" premix={pm.key}@{m_off / SAMPLE_RATE:.5f}s"
        snr = round(float(rng.uniform(*snr_range)), 2)
        x = _mix(s, n, snr)
        x, ref = fit_peak(x, s)
        noisy_path = out_audio / "noisy" / f"{key}.wav"
        clean_path = out_audio / "clean" / f"{key}.wav"
        write_wav(noisy_path, x)
        write_wav(clean_path, ref)
        wav[key] = str(noisy_path)
        spk1[key] = str(clean_path)
        utt2spk[key] = utt.label
        extra["utt2snr"][key] = f"{snr:.2f}"
        extra["utt2source"][key] = source
    return wav, spk1, utt2spk, extra


def speaker_items(utts: Sequence[Item], keys: Sequence[str]) -> List[Item]:
    """The items of ``utts`` whose key is in ``keys``, in ``keys`` order."""
    by_key = {u.key: u for u in utts}
    return [by_key[k] for k in keys]
