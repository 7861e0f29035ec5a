"""What the page shows of an enhanced file: spectrograms and reference-free scores."""

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from espnet2_pse.data.audio import resample

SCORE_RATE = 16000


def spectrogram_png(x: np.ndarray, sample_rate: int, path: Path, title: str, vmax_db: float) -> Path:
    """A log-magnitude spectrogram (32-ms Hann frames, 8-ms hop, 80 dB range under
    ``vmax_db``) as a PNG: the same range for both sides of an A/B pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    freqs, times, db = _spectrogram_db(x, sample_rate)
    fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=100)
    ax.pcolormesh(times, freqs / 1000, db, shading="auto", cmap="magma", vmin=vmax_db - 80, vmax=vmax_db)
    ax.set(title=title, xlabel="time (s)", ylabel="kHz")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def peak_db(x: np.ndarray, sample_rate: int) -> float:
    return float(_spectrogram_db(x, sample_rate)[2].max())


def _spectrogram_db(x: np.ndarray, sample_rate: int):
    from scipy.signal import stft

    n = int(0.032 * sample_rate)
    freqs, times, spec = stft(x, sample_rate, window="hann", nperseg=n, noverlap=n - n // 4)
    return freqs, times, 20 * np.log10(np.abs(spec) + 1e-8)


def reference_free_scores(x: np.ndarray, sample_rate: int) -> Optional[Dict[str, float]]:
    """DNSMOS P.835 SIG / BAK / OVRL and personalized DNSMOS OVRL (the DNS personalized
    track's model: a kept second voice lowers it), or None without the metrics extra."""
    from espnet2_pse.scoring import dnsmos

    x = resample(np.asarray(x, np.float32), sample_rate, SCORE_RATE)
    try:
        scores = dnsmos.dnsmos(x, SCORE_RATE, "dnsmos")
        scores["povrl"] = dnsmos.dnsmos(x, SCORE_RATE, "pdnsmos")["ovrl"]
    except ImportError:
        return None
    return {k: round(v, 2) for k, v in scores.items()}
