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

Interfering-talker sets (:func:`make_interferer_mixtures`) reuse the clean references of a
test set and add one utterance of another voice at a target-to-interferer ratio (TIR) plus
noise, both measured against the target alone: the situation personalized enhancement is for.
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


def make_interferer_mixtures(
    out_audio: Path,
    name: str,
    references: Sequence[Item],
    talkers: Sequence[Item],
    noise: Sequence[Item],
    rng: np.random.Generator,
    tir_range: Tuple[float, float],
    snr_range: Tuple[float, float],
) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str], Dict[str, Dict[str, str]]]:
    """Write one mixture per clean reference: target + interfering talker + noise.

    Args:
        name: middle part of the keys, ``<speaker>-<name><index>``.
        references: clean target crops (e.g. a test set's ``spk1.scp``); ``label`` is the
            target speaker; each mixture has the length of its reference.
        talkers: utterances of other voices (``label``: their speaker id); a talker shorter
            than the reference stops early, as a person in the room would.
        noise: noise pool, looped when shorter than the reference.
        tir_range: (low, high) dB of the target-to-interferer energy ratio.
        snr_range: (low, high) dB of the target-to-noise ratio.
    Returns:
        (wav, spk1, utt2spk, extra) tables; extra has ``utt2tir``, ``utt2snr`` (dB),
        ``utt2interferer`` (the talker's speaker id) and ``utt2source``.
    """
    if not references or not talkers or not noise:
        raise ValueError(f"{name}: empty reference, talker or noise pool for interferer mixtures")
    if any(t.label == references[0].label for t in talkers):
        raise ValueError(f"{name}: the talker pool holds the target speaker {references[0].label}")
    load = _Cache()
    talker_order = rng.permutation(len(talkers))
    noise_order = rng.permutation(len(noise))
    wav: Dict[str, str] = {}
    spk1: Dict[str, str] = {}
    utt2spk: Dict[str, str] = {}
    extra: Dict[str, Dict[str, str]] = {"utt2tir": {}, "utt2snr": {}, "utt2interferer": {}, "utt2source": {}}
    for i, ref in enumerate(references):
        s = load(ref.path).astype(np.float64)
        talker = talkers[talker_order[i % len(talkers)]]
        nz = noise[noise_order[i % len(noise)]]
        t, t_off = _crop(load(talker.path), len(s), rng, tile=False)
        n, n_off = _crop(load(nz.path), len(s), rng, tile=True)
        tir = round(float(rng.uniform(*tir_range)), 2)
        snr = round(float(rng.uniform(*snr_range)), 2)
        # Both levels against the target alone, so TIR and SNR are independent knobs.
        x = _mix(s, t, tir) + (_mix(s, n, snr) - s)
        x, target = fit_peak(x, s)
        key = f"{ref.label}-{name}{i:04d}"
        noisy_path = out_audio / "noisy" / f"{key}.wav"
        clean_path = out_audio / "clean" / f"{key}.wav"
        write_wav(noisy_path, x)
        write_wav(clean_path, target)
        wav[key], spk1[key], utt2spk[key] = str(noisy_path), str(clean_path), ref.label
        extra["utt2tir"][key] = f"{tir:.2f}"
        extra["utt2snr"][key] = f"{snr:.2f}"
        extra["utt2interferer"][key] = talker.label
        extra["utt2source"][key] = (f"speech={ref.key} talker={talker.key}@{t_off / SAMPLE_RATE:.5f}s "
                                    f"noise={nz.key}@{n_off / SAMPLE_RATE:.5f}s")
    return wav, spk1, utt2spk, extra
