"""What the page shows of an enhanced file: spectrograms and reference-free scores."""

from pathlib import Path
from typing import Dict, Optional

import numpy as np

from espnet2_pse.data.audio import resample
from espnet2_pse.scoring.files import atomic_write

SCORE_RATE = 16000


def spectrogram_pngs(signals: Dict[str, np.ndarray], sample_rate: int, folder: Path, label: str) -> Dict[str, Path]:
    """``{name: (T,) signal}`` -> ``{name: <folder>/<name>.png}``: log-magnitude spectrograms
    (32-ms Hann frames, 8-ms hop) on one 80-dB scale under the loudest bin of them all, so
    that the two sides of an A/B pair compare by eye."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spectra = {name: _spectrogram_db(x, sample_rate) for name, x in signals.items()}
    top = max(float(db.max()) for _, _, db in spectra.values())
    paths = {}
    for name, (freqs, times, db) in spectra.items():
        fig, ax = plt.subplots(figsize=(6.4, 2.6), dpi=100)
        ax.pcolormesh(times, freqs / 1000, db, shading="auto", cmap="magma", vmin=top - 80, vmax=top)
        ax.set(title=f"{name} ({label})", xlabel="time (s)", ylabel="kHz")
        fig.tight_layout()
        paths[name] = atomic_write(folder / f"{name}.png", fig.savefig)
        plt.close(fig)
    return paths


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
