"""Synthetic noise families for the embedded corpus, in three disjoint banks.

The banks mirror the paper's corpora roles:
  premixture ("in-the-wild" noise already in the user's recordings, FSD50K's role):
      pink, brown, hum, wind, rain
  injection / training (MUSAN free-sound's role): white, babble, clicks, bursty, chords, engine
  test (MUSAN sound-bible's role, unseen in training): siren, beeps, crowd (babble of other
      voices and more talkers), crackle (impulses at rates and resonances clicks never uses)
Every generator maps (rng, number of samples) to a (T,) float32 signal; levels are set later
by mixing at an SNR, so only the shape of the signal matters here.
"""

from typing import Callable, Dict, Sequence, Tuple

import numpy as np
from scipy.signal import butter, fftconvolve, sosfilt

from espnet2_pse.data.audio import SAMPLE_RATE
from espnet2_pse.data import synth_speech

SR = SAMPLE_RATE

PREMIX_FAMILIES: Tuple[str, ...] = ("pink", "brown", "hum", "wind", "rain")
INJECT_FAMILIES: Tuple[str, ...] = ("white", "babble", "clicks", "bursty", "chords", "engine")
TEST_FAMILIES: Tuple[str, ...] = ("siren", "beeps", "crowd", "crackle")
# Noise bank -> families it draws from (premix_test: FSD50K eval's role; unused by the paper).
BANK_FAMILIES: Dict[str, Tuple[str, ...]] = {
    "premix_train": PREMIX_FAMILIES,
    "premix_val": PREMIX_FAMILIES,
    "premix_test": PREMIX_FAMILIES,
    "inject_train": INJECT_FAMILIES,
    "inject_val": INJECT_FAMILIES,
    "test": TEST_FAMILIES,
}


def _colored(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^beta (flat below 20 Hz to avoid a DC drift)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    spec /= np.maximum(f, 20.0) ** (beta / 2.0)
    return np.fft.irfft(spec, n)


def _smooth_envelope(rng: np.random.Generator, n: int, rate_hz: float, depth_db: float) -> np.ndarray:
    """Slowly varying positive gain: low-passed noise mapped to +-depth_db/2 dB."""
    sos = butter(2, rate_hz, fs=SR, output="sos")
    e = sosfilt(sos, rng.standard_normal(n + SR))[SR:]
    e /= np.abs(e).max() + 1e-9
    return 10 ** (depth_db / 2 * e / 20)


def _resonant_impulses(
    rng: np.random.Generator, n: int, rate: float, freq: Tuple[float, float], decay_s: Tuple[float, float]
) -> np.ndarray:
    """Poisson impulses (``rate`` per second), each ringing as a damped sinusoid.

    Impulses share 12 random resonators (one FFT convolution each) instead of one per impulse.
    """
    out = np.zeros(n)
    count = rng.poisson(rate * n / SR)
    positions = rng.integers(0, n, count)
    amplitudes = rng.choice([-1.0, 1.0], count) * rng.uniform(0.2, 1.0, count)
    which = rng.integers(0, 12, count)
    for r in range(12):
        tau = rng.uniform(*decay_s)
        t = np.arange(int(5 * tau * SR) + 1) / SR
        ring = np.sin(2 * np.pi * rng.uniform(*freq) * t) * np.exp(-t / tau)
        train = np.zeros(n)
        np.add.at(train, positions[which == r], amplitudes[which == r])
        out += fftconvolve(train, ring)[:n]
    return out


def white(rng, n, ctx):
    return rng.standard_normal(n) * _smooth_envelope(rng, n, 0.3, 4.0)


def pink(rng, n, ctx):
    return _colored(rng, n, 1.0)


def brown(rng, n, ctx):
    return _colored(rng, n, 2.0)


def hum(rng, n, ctx):
    """Mains hum: 50 or 60 Hz with decaying harmonics, slight wobble, a faint noise floor."""
    f0 = rng.choice([50.0, 60.0]) * (
        1 + 0.002 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * np.arange(n) / SR)
    )
    phase = 2 * np.pi * np.cumsum(f0) / SR
    slope = rng.uniform(0.5, 1.5)
    x = sum(
        rng.uniform(0.2, 1.0) / k**slope * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) for k in range(1, 12)
    )
    return x + 0.03 * _colored(rng, n, 1.0) / 30


def wind(rng, n, ctx):
    """Low-passed noise with gusts."""
    sos = butter(2, rng.uniform(150, 600), fs=SR, output="sos")
    return sosfilt(sos, rng.standard_normal(n)) * _smooth_envelope(rng, n, rng.uniform(0.2, 1.0), 20.0)


def rain(rng, n, ctx):
    """Dense tiny high-pitched drops over a soft hiss."""
    drops = _resonant_impulses(rng, n, rng.uniform(300, 1200), (2000, 7000), (0.0005, 0.002))
    hiss = sosfilt(butter(2, 1500, btype="high", fs=SR, output="sos"), rng.standard_normal(n))
    return drops + 0.1 * hiss


def _babble(rng, n, ctx, langs: Sequence[str], talkers: Tuple[int, int]) -> np.ndarray:
    k = int(rng.integers(talkers[0], talkers[1] + 1))
    streams = [synth_speech.talker_stream(n / SR, langs, ctx["sentences"], rng) for _ in range(k)]
    return sum(rng.uniform(0.5, 1.0) * s for s in streams)


def babble(rng, n, ctx):
    return _babble(rng, n, ctx, synth_speech.BABBLE_TRAIN_LANGS, (3, 6))


def crowd(rng, n, ctx):
    return _babble(rng, n, ctx, synth_speech.BABBLE_TEST_LANGS, (7, 10))


def clicks(rng, n, ctx):
    return _resonant_impulses(rng, n, rng.uniform(1, 6), (800, 5000), (0.003, 0.03))


def crackle(rng, n, ctx):
    return _resonant_impulses(rng, n, rng.uniform(15, 60), (150, 700), (0.001, 0.006))


def bursty(rng, n, ctx):
    """Noise switched on and off in bursts of 0.1-0.8 s, with 10 ms ramps."""
    base = _colored(rng, n, rng.choice([0.0, 1.0]))
    gate = np.zeros(n)
    pos, on = 0, bool(rng.integers(2))
    while pos < n:
        length = int(rng.uniform(0.1, 0.8 if on else 1.0) * SR)
        gate[pos : pos + length] = 1.0 if on else 0.03
        pos, on = pos + length, not on
    ramp = np.hanning(int(0.02 * SR))
    return base * np.convolve(gate, ramp / ramp.sum(), mode="same")


def chords(rng, n, ctx):
    """Music-like: a sequence of plucked triads/sevenths (equal temperament, A4 = 440 Hz)."""
    out = np.zeros(n)
    pos = 0
    while pos < n:
        length = min(int(rng.uniform(0.4, 1.2) * SR), n - pos)
        t = np.arange(length) / SR
        root = int(rng.integers(45, 65))
        shape = [(0, 4, 7), (0, 3, 7), (0, 5, 7), (0, 4, 7, 10)][rng.integers(4)]
        env = np.exp(-t * rng.uniform(1.5, 5.0))
        for step in shape:
            f = 440.0 * 2 ** ((root + step - 69) / 12)
            out[pos : pos + length] += env * sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 6))
        pos += length
    return out


def engine(rng, n, ctx):
    """Sawtooth-like harmonics of a slowly varying rotation rate, plus rumble."""
    f0 = rng.uniform(25, 60) * _smooth_envelope(rng, n, 0.3, 6.0)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, int(2500 / f0.max())))
    return x + 0.3 * _colored(rng, n, 2.0) / 100


def siren(rng, n, ctx):
    """Wailing or yelping siren: a tone swept up and down, with two overtones."""
    t = np.arange(n) / SR
    period = rng.uniform(0.25, 4.0)
    sweep = np.sin(2 * np.pi * t / period) if rng.integers(2) else 2 * ((t / period) % 1.0) - 1
    f = rng.uniform(700, 1200) + rng.uniform(200, 500) * sweep
    phase = 2 * np.pi * np.cumsum(f) / SR
    return np.sin(phase) + 0.3 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase)


def beeps(rng, n, ctx):
    """Alarm beeps: a square-ish tone (odd harmonics) gated on and off regularly."""
    t = np.arange(n) / SR
    f = rng.uniform(1500, 3500)
    tone = sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 3, 5) if k * f < SR / 2)  # no aliasing
    on, off = rng.uniform(0.08, 0.3), rng.uniform(0.1, 0.6)
    gate = ((t % (on + off)) < on).astype(float)
    ramp = np.hanning(int(0.004 * SR))
    return tone * np.convolve(gate, ramp / ramp.sum(), mode="same")


FAMILIES: Dict[str, Callable] = {
    f.__name__: f
    for f in (
        white,
        pink,
        brown,
        hum,
        wind,
        rain,
        babble,
        crowd,
        clicks,
        crackle,
        bursty,
        chords,
        engine,
        siren,
        beeps,
    )
}


def generate(family: str, rng: np.random.Generator, seconds: float, ctx: dict) -> np.ndarray:
    """One noise signal of ``family``, (T,) float32 with peak ``U(0.3, 0.6)``.

    Args:
        ctx: shared inputs; babble families need ``ctx["sentences"]``.
    """
    n = int(seconds * SR)
    x = np.asarray(FAMILIES[family](rng, n, ctx), dtype=np.float64)[:n]
    peak = np.abs(x).max()
    if not np.isfinite(peak) or peak <= 0:
        raise RuntimeError(f"noise family {family} produced an invalid signal")
    return (x * rng.uniform(0.3, 0.6) / peak).astype(np.float32)
