"""Mixing signals at a given SNR: the one implementation every stage uses.

The paper's rule: the noise is scaled so that energy(source) / energy(scaled noise) equals
10^(SNR/10), with energies over the whole crop. The "source" is whatever the noise is added to:
clean speech for the premixture, the already noisy pseudo-source for the injection.
"""

from typing import Sequence, Tuple

import numpy as np
import torch

from espnet2_pse.data.audio import load_audio

EPS = 1e-8


def noise_gain(source: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Gain that puts ``noise`` at ``snr_db`` below ``source``.

    Args:
        source: (..., T) signal the noise is added to.
        noise: (..., T) noise, same shape as ``source``.
        snr_db: (...) or scalar, target SNR in dB.
    Returns:
        (..., 1) gain to multiply ``noise`` by.
    """
    snr_db = torch.as_tensor(snr_db, dtype=source.dtype, device=source.device)
    source_energy = source.pow(2).sum(-1)
    noise_energy = noise.pow(2).sum(-1).clamp_min(EPS)
    gain = torch.sqrt(source_energy / (noise_energy * 10.0 ** (snr_db / 10.0)))
    return gain.unsqueeze(-1)


def mix_at_snr(source: torch.Tensor, noise: torch.Tensor, snr_db) -> torch.Tensor:
    """``source + g * noise`` with g from :func:`noise_gain`; shapes (..., T)."""
    return source + noise_gain(source, noise, snr_db) * noise


def snr_db(source: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Energy ratio of ``source`` to ``noise`` in dB over the last axis; (..., T) -> (...)."""
    return 10.0 * torch.log10(source.pow(2).sum(-1).clamp_min(EPS) / noise.pow(2).sum(-1).clamp_min(EPS))


def add_noise_clip(
    speech: np.ndarray,
    noise_paths: Sequence[str],
    snr_range: Tuple[float, float],
    rng: np.random.Generator,
    sample_rate: int = 16000,
) -> np.ndarray:
    """(T,) ``speech`` plus a random crop of a random noise file at an SNR ~ U(snr_range) dB.

    Noise shorter than the speech is repeated; ``rng`` fixes the file, crop and SNR.
    """
    noise = load_audio(noise_paths[int(rng.integers(len(noise_paths)))], sample_rate)
    if len(noise) < len(speech):
        noise = np.pad(noise, (0, len(speech) - len(noise)), mode="wrap")
    start = int(rng.integers(0, len(noise) - len(speech) + 1))
    snr = float(rng.uniform(*snr_range))
    crop = torch.from_numpy(noise[start : start + len(speech)])
    return mix_at_snr(torch.from_numpy(speech), crop, snr).numpy()
