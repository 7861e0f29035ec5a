"""Synthetic test signals for the scoring tests."""

import numpy as np

FS = 16000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(T,) harmonic tone at 140 Hz with a syllable-rate (3 Hz) envelope, peak about 0.2:
    enough "speech" for PESQ's voice activity detection."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    voice = sum(np.sin(2 * np.pi * k * 140.0 * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 20))
    envelope = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
    return 0.1 * voice * envelope
