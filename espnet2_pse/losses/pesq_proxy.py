"""A differentiable proxy of wideband PESQ (ITU-T P.862.2) for training losses, at 16 kHz.

It follows PESQ's perceptual model as the standard describes it, without its time alignment
(training pairs are aligned) and with STFT-domain shortcuts:

1. level alignment: each signal is scaled so that its mean square between 350 and 3250 Hz is
   1e7 (16-bit sample units), which makes the score scale-free;
2. 32-ms Hann frames every 16 ms; the power of 49 bands equally wide on the Bark scale from
   100 Hz (the wideband mode's high-pass) to 8 kHz, in PESQ's units (one scale constant,
   fitted so that the raw scores are level with pesq's on one real voice);
3. the reference's bands are equalised towards the estimate's over the speech frames (ratio
   limited to [0.01, 100]) and each estimate frame towards the reference's audible power
   (0.8 of this frame's ratio and 0.2 of the previous one's, limited to [3e-4, 5]): PESQ
   forgives a fixed filter and slow gain changes;
4. Zwicker loudness per band above the absolute hearing threshold (Terhardt's formula), with
   exponent 0.23 rising below 4 Bark and PESQ's loudness scale;
5. per cell the loudness difference with a dead zone of a quarter of the smaller loudness;
   the asymmetric disturbance weighs it by ((P_est + 50) / (P_ref + 50))^1.2 (0 below 3,
   capped at 12), so added noise weighs more than missing speech;
6. per frame the Bark-width-weighted L2 (symmetric) and L1 (asymmetric) norms over bands,
   weighted by ((audible reference power + 1e5) / 1e7)^-0.04 so that quiet frames count a
   little more, each capped at 45;
7. L6 over 20-frame intervals of half overlap, then L2 over intervals; raw MOS
   4.5 - 0.1 d_sym - 0.0309 d_asym, mapped to the P.862.2 scale by
   0.999 + 4 / (1 + exp(-1.3669 raw + 3.8224)).

On 450 real-voice test files of this project's bench (unprocessed, DeepFilterNet3, the
generalist and personal models; three voices) its raw scores have a correlation of 0.94
with pesq's. Step 3's compensation factors and step 5's asymmetry weights are constants in
the gradient, like a normalisation. The loss is the negative raw MOS, whose gradient does
not vanish where the wideband mapping saturates.
"""

import functools

import torch

SAMPLE_RATE = 16000
FFT, HOP = 512, 256
BANDS, LOWEST_HZ = 49, 100.0
LEVEL_BAND_HZ = (350.0, 3250.0)
ALIGNED_POWER = 1e7  # mean square of the level-aligned signal (16-bit sample units)
# From STFT power of the aligned signal to PESQ's band power: its 16-kHz factor, 6.9e-6, times
# 700, the one constant fitted here (raw scores level with pesq's on one real voice).
BAND_POWER_SCALE = 6.910853e-6 * 700.0
SILENT_FRAME_POWER = 1e7  # frames whose audible reference power is below it are silent
FREQ_EQ_LIMITS, FREQ_EQ_FLOOR = (0.01, 100.0), 1000.0
GAIN_EQ_LIMITS, GAIN_EQ_FLOOR, GAIN_EQ_CURRENT = (3e-4, 5.0), 5e3, 0.8
AUDIBLE_FACTOR = 100.0  # speech frames and the frequency equalisation count bands 20 dB above threshold
LOUDNESS_SCALE, ZWICKER_POWER = 0.1866055, 0.23
DEAD_ZONE = 0.25
ASYMMETRY_FLOOR, ASYMMETRY_POWER, ASYMMETRY_LIMITS = 50.0, 1.2, (3.0, 12.0)
FRAME_CAP = 45.0
SILENCE_FLOOR, SILENCE_POWER = 1e5, 0.04
INTERVAL_FRAMES = 20
SYMMETRIC_WEIGHT, ASYMMETRIC_WEIGHT = 0.1, 0.0309
MIN_SAMPLES = FFT + (INTERVAL_FRAMES - 1) * HOP  # one aggregation interval


def _bark(hz: torch.Tensor) -> torch.Tensor:
    return 13.0 * torch.atan(0.00076 * hz) + 3.5 * torch.atan((hz / 7500.0) ** 2)


def _threshold_db(hz: torch.Tensor) -> torch.Tensor:
    """Absolute hearing threshold in dB SPL (Terhardt)."""
    khz = hz / 1000.0
    return 3.64 * khz ** -0.8 - 6.5 * torch.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz ** 4


@functools.lru_cache(maxsize=None)
def _tables(dtype, device):
    """(band matrix (bands, bins), level-band bins (bins,), threshold power (bands, 1),
    loudness exponent (bands, 1), band width in Bark (bands, 1)), built once per dtype and
    device."""
    freqs = torch.arange(FFT // 2 + 1, dtype=torch.float64) * SAMPLE_RATE / FFT
    low, high = _bark(torch.tensor(LOWEST_HZ, dtype=torch.float64)), _bark(freqs[-1])
    index = ((_bark(freqs) - low) / (high - low) * BANDS).floor().clamp(max=BANDS - 1)
    index[freqs < LOWEST_HZ] = -1
    matrix = (index[None, :] == torch.arange(BANDS, dtype=torch.float64)[:, None]).double()
    width = torch.full((BANDS,), float(high - low) / BANDS, dtype=torch.float64)
    kept = matrix.sum(1) > 0  # at 16 kHz the lowest Bark bands can hold no bin
    matrix, width = matrix[kept], width[kept]
    centres = (matrix @ freqs) / matrix.sum(1)
    threshold = 10.0 ** (_threshold_db(centres) / 10.0)
    # Loudness grows faster below 4 Bark: the exponent rises to 0.23 * 2^0.15 at the bottom.
    exponent = ZWICKER_POWER * (6.0 / (_bark(centres) + 2.0)).clamp(1.0, 2.0) ** 0.15
    level_bins = ((freqs >= LEVEL_BAND_HZ[0]) & (freqs <= LEVEL_BAND_HZ[1])).double()
    return tuple(t.to(dtype).to(device) for t in (matrix, level_bins, threshold[:, None],
                                                   exponent[:, None], width[:, None]))


def _band_power(x: torch.Tensor, matrix, level_bins) -> torch.Tensor:
    """(B, bands, frames) band power of the level-aligned signal, in PESQ's units."""
    window = torch.hann_window(FFT, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, FFT, hop_length=HOP, window=window, center=False, return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)  # (B, bins, frames)
    # Parseval: the mean square of the signal in the level band, from its windowed frames
    mean_square = 2.0 * (level_bins[:, None] * power).sum(1).mean(-1) / (FFT * window.pow(2).sum())
    power = power * (ALIGNED_POWER / (mean_square + 1e-20))[:, None, None]
    return BAND_POWER_SCALE * (matrix @ power)


def _audible_power(bands: torch.Tensor, threshold: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """Per frame, the power of the bands above ``factor`` times their threshold, (B, frames)."""
    return (bands * (bands > factor * threshold)).sum(1)


def _loudness(power: torch.Tensor, threshold: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    growth = (0.5 + 0.5 * power / threshold).pow(exponent) - 1.0
    return (LOUDNESS_SCALE * (2.0 * threshold).pow(exponent) * growth).clamp(min=0.0)


def _lp(x: torch.Tensor, p: float, dim: int, eps: float = 1e-12) -> torch.Tensor:
    return (x.pow(p).mean(dim) + eps).pow(1.0 / p)


def raw_mos(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The proxy's raw MOS (P.862 scale, 4.5 for identical signals) of (B, T) 16-kHz signals."""
    if est.size(-1) < MIN_SAMPLES:
        raise ValueError(f"pesq needs signals of at least {MIN_SAMPLES} samples ({INTERVAL_FRAMES} "
                         f"32-ms frames at {SAMPLE_RATE} Hz), got {est.size(-1)}")
    matrix, level_bins, threshold, exponent, width = _tables(est.dtype, est.device)
    est_bands, ref_bands = _band_power(est, matrix, level_bins), _band_power(ref, matrix, level_bins)
    with torch.no_grad():
        speech = (_audible_power(ref_bands, threshold, AUDIBLE_FACTOR) >= SILENT_FRAME_POWER)[:, None]
        frames = speech.sum(-1, keepdim=True).clamp(min=1)

        def active_mean(bands):
            return (bands * (bands > AUDIBLE_FACTOR * threshold) * speech).sum(-1, keepdim=True) / frames
        freq_eq = ((active_mean(est_bands) + FREQ_EQ_FLOOR)
                   / (active_mean(ref_bands) + FREQ_EQ_FLOOR)).clamp(*FREQ_EQ_LIMITS)
        ref_bands = ref_bands * freq_eq
        ref_audible = _audible_power(ref_bands, threshold)  # (B, frames), also the frame weights' loudness
        ratio = ((ref_audible + GAIN_EQ_FLOOR)
                 / (_audible_power(est_bands, threshold) + GAIN_EQ_FLOOR))
        gain = torch.cat([ratio[:, :1], GAIN_EQ_CURRENT * ratio[:, 1:] + (1 - GAIN_EQ_CURRENT) * ratio[:, :-1]], -1)
        gain = gain.clamp(*GAIN_EQ_LIMITS)[:, None]
    est_bands = est_bands * gain
    est_loud, ref_loud = _loudness(est_bands, threshold, exponent), _loudness(ref_bands, threshold, exponent)
    diff = est_loud - ref_loud
    margin = DEAD_ZONE * torch.minimum(est_loud, ref_loud)
    disturbance = diff - torch.maximum(torch.minimum(diff, margin), -margin)
    with torch.no_grad():
        asymmetry = ((est_bands + ASYMMETRY_FLOOR) / (ref_bands + ASYMMETRY_FLOOR)).pow(ASYMMETRY_POWER)
        asymmetry = torch.where(asymmetry < ASYMMETRY_LIMITS[0], torch.zeros_like(asymmetry),
                                asymmetry.clamp(max=ASYMMETRY_LIMITS[1]))
        frame_weight = ((ref_audible + SILENCE_FLOOR) / ALIGNED_POWER).pow(-SILENCE_POWER)
    # Band-width-weighted norms over bands: L2 for the symmetric disturbance, L1 for the asymmetric.
    total = width.sum()
    symmetric = total.sqrt() * ((width * disturbance).pow(2).sum(1) + 1e-12).sqrt()
    asymmetric = (width * disturbance.abs() * asymmetry).sum(1)
    scores = []
    for per_frame in (symmetric, asymmetric):  # (B, frames) -> L6 per interval, then L2
        intervals = (per_frame * frame_weight).clamp(max=FRAME_CAP).unfold(-1, INTERVAL_FRAMES, INTERVAL_FRAMES // 2)
        scores.append(_lp(_lp(intervals, 6.0, -1), 2.0, -1))
    return 4.5 - SYMMETRIC_WEIGHT * scores[0] - ASYMMETRIC_WEIGHT * scores[1]


def wideband_mos(raw: torch.Tensor) -> torch.Tensor:
    """P.862.2's mapping of a raw score to the wideband MOS-LQO scale (1.04 to 4.64)."""
    return 0.999 + 4.0 / (1.0 + torch.exp(-1.3669 * raw + 3.8224))


def pesq_proxy(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Wideband MOS-LQO of the proxy for (B, T) 16-kHz signals, (B,)."""
    return wideband_mos(raw_mos(est, ref))
