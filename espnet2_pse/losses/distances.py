"""Signal distances D(est, ref) of the PSE objectives, whole-signal and segmental.

All functions take batched time-domain signals of shape (B, T) and never modify their
inputs. Distances are losses: lower is better.

- ``snr``: negative SNR in dB of zero-mean signals, -10 log10(||r||^2 / ||e - r||^2).
- ``sisdr``: negative scale-invariant SDR in dB (zero-mean signals).
- ``mse``: mean squared error (whole signal: raw samples; segmental: per-frame energy of the
  windowed error divided by the frame length).
- ``cspec``: compressed spectral distance in dB (whole signal only), the loss family of Braun
  and Tashev (2021): STFT magnitudes raised to the power 0.3, a complex term (compressed
  magnitude with the signal's phase, share 0.3) plus a magnitude-only term (share 0.7), as
  -10 log10(||compressed ref||^2 / error), averaged over 256/512/1024-point STFTs. Unlike the
  SNR it weighs quiet time-frequency regions, which PESQ and eSTOI hear.
- ``estoi``: the negative of a differentiable proxy of extended STOI (Jensen and Taal, 2016),
  in [-1, 1] (whole signal only, 16 kHz): 15 one-third-octave band envelopes from 150 Hz of a
  25.6-ms STFT (hop 12.8 ms), cut into every 30-frame (384 ms) segment; each segment is
  normalised per band over time, then per frame over bands, and the score is the mean
  correlation of estimate and reference. Unlike eSTOI itself it works at 16 kHz (no resampling
  to 10 kHz) and keeps silent frames.
- ``erb``: compressed ERB-band distance in dB (whole signal only, 16 kHz): the power of a
  512-point STFT (hop 128) summed into 32 triangular bands evenly spaced on the ERB-rate scale
  from 50 Hz to 8 kHz, raised to the power 0.15 (the magnitude's 0.3), as
  -10 log10(||compressed ref||^2 / error). Where ``cspec`` gives each linear-frequency bin the
  same weight (half of them above 4 kHz), this gives each ERB band the same weight, as hearing
  resolves frequency: most of the weight lies where speech has its energy.
- ``pesq``: the negative raw MOS of a differentiable proxy of wideband PESQ (whole signal only,
  16 kHz; :mod:`espnet2_pse.losses.pesq_proxy`), 4.5 minus its symmetric and asymmetric
  loudness disturbances: like PESQ, and unlike the SNR, it weighs added noise (in the pauses
  above all) more than speech taken away.

The segmental versions share one framing with the DP SNR predictor and its targets (the STFT
framing): centred reflect padding of ``frame_length // 2`` samples each side, frames of
``frame_length`` samples every ``hop_length`` samples, so F = T // hop_length + 1, each frame
multiplied by a Hann window.

Ratios are computed as (num + eps) / (den + eps): finite for perfect estimates, and a silent
reference frame still pulls the estimate towards silence.
"""

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from espnet2_pse.losses import pesq_proxy

EPS = 1e-8

DISTANCES = ("snr", "sisdr", "mse", "cspec", "erb", "estoi", "pesq")
WHOLE_SIGNAL_ONLY = ("cspec", "erb", "estoi", "pesq")
# cspec: magnitude compression exponent, share of the complex term, STFT sizes (hop = size / 4).
SPEC_COMPRESSION = 0.3
SPEC_COMPLEX_SHARE = 0.3
SPEC_FFT_SIZES = (256, 512, 1024)
SPEC_MIN_SAMPLES = max(SPEC_FFT_SIZES) // 2 + 1  # the largest STFT's reflect padding
# erb: STFT size (hop = size / 4), band count and edges, at 16 kHz.
ERB_FFT, ERB_BANDS, ERB_LOW_HZ, ERB_HIGH_HZ, ERB_SAMPLE_RATE = 512, 32, 50.0, 8000.0, 16000
ERB_MIN_SAMPLES = ERB_FFT // 2 + 1
# estoi: eSTOI's analysis (25.6-ms frames every 12.8 ms, 30-frame segments, 15 third-octave
# bands from 150 Hz) at 16 kHz.
ESTOI_SAMPLE_RATE = 16000
ESTOI_WINDOW, ESTOI_HOP, ESTOI_FFT = 410, 205, 512
ESTOI_SEGMENT_FRAMES = 30
ESTOI_BANDS, ESTOI_LOWEST_HZ = 15, 150.0
ESTOI_MIN_SAMPLES = ESTOI_WINDOW + (ESTOI_SEGMENT_FRAMES - 1) * ESTOI_HOP  # one segment


def _check_name(name: str) -> None:
    if name not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got '{name}'")


def _check_pair(est: torch.Tensor, ref: torch.Tensor) -> None:
    if est.shape != ref.shape or est.dim() != 2:
        raise ValueError(
            f"est and ref must both be (B, T) with the same shape, got "
            f"{tuple(est.shape)} and {tuple(ref.shape)}"
        )


def _zero_mean(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _neg_ratio_db(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    return -10.0 * torch.log10((num + eps) / (den + eps))


def _neg_sdr(est: torch.Tensor, ref: torch.Tensor, scale_invariant: bool, eps: float):
    """Negative (SI-)SNR in dB over the last axis; est and ref already zero-mean."""
    if scale_invariant:
        alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
        target = alpha * ref
    else:
        target = ref
    return _neg_ratio_db(target.pow(2).sum(-1), (est - target).pow(2).sum(-1), eps)


def _stft_power(x: torch.Tensor, n_fft: int):
    """(complex spectrum, power) of (B, T) ``x`` with a Hann window and hop n_fft / 4, (B, F, N)."""
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop_length=n_fft // 4, window=window, return_complex=True)
    return spec, spec.real.pow(2) + spec.imag.pow(2)


def _compressed_stft(x: torch.Tensor, n_fft: int):
    """(compressed magnitude, compressed complex spectrum) of (B, T) ``x``, each (B, F, N)."""
    spec, power = _stft_power(x, n_fft)
    # The small floor keeps the gradient of |X|^c finite in silent bins.
    power = power + 1e-12
    return power.pow(SPEC_COMPRESSION / 2), spec * power.pow((SPEC_COMPRESSION - 1) / 2)


def _neg_cspec(est: torch.Tensor, ref: torch.Tensor, eps: float) -> torch.Tensor:
    if est.size(-1) < SPEC_MIN_SAMPLES:
        raise ValueError(f"cspec needs signals longer than {SPEC_MIN_SAMPLES - 1} samples, got {est.size(-1)}")
    total = 0.0
    for n_fft in SPEC_FFT_SIZES:
        est_mag, est_cplx = _compressed_stft(est, n_fft)
        ref_mag, ref_cplx = _compressed_stft(ref, n_fft)
        error = ((1 - SPEC_COMPLEX_SHARE) * (est_mag - ref_mag).pow(2)
                 + SPEC_COMPLEX_SHARE * (est_cplx - ref_cplx).abs().pow(2)).sum((-2, -1))
        total = total + _neg_ratio_db(ref_mag.pow(2).sum((-2, -1)), error, eps)
    return total / len(SPEC_FFT_SIZES)


def _erb_rate(hz: torch.Tensor) -> torch.Tensor:
    """Glasberg and Moore's ERB-rate scale (ERBs below ``hz``)."""
    return 21.4 * torch.log10(1 + 0.00437 * hz)


@functools.lru_cache(maxsize=None)
def _erb_matrix(dtype, device) -> torch.Tensor:
    """(bands, bins) triangular filters evenly spaced on the ERB-rate scale (built once)."""
    freqs = torch.arange(ERB_FFT // 2 + 1, dtype=torch.float64) * ERB_SAMPLE_RATE / ERB_FFT
    low, high = _erb_rate(torch.tensor([ERB_LOW_HZ, ERB_HIGH_HZ], dtype=torch.float64)).tolist()
    edges = torch.linspace(low, high, ERB_BANDS + 2, dtype=torch.float64)
    rate = _erb_rate(freqs)
    rising = (rate[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - rate[None]) / (edges[2:, None] - edges[1:-1, None])
    return rising.minimum(falling).clamp(min=0).to(device=device, dtype=dtype)


def _neg_erb(est: torch.Tensor, ref: torch.Tensor, eps: float) -> torch.Tensor:
    if est.size(-1) < ERB_MIN_SAMPLES:
        raise ValueError(f"erb needs signals longer than {ERB_MIN_SAMPLES - 1} samples, got {est.size(-1)}")
    compressed = []
    for x in (est, ref):
        power = _erb_matrix(x.dtype, x.device) @ _stft_power(x, ERB_FFT)[1]
        # The small floor keeps the gradient of the compression finite in silent bands.
        compressed.append((power + 1e-12).pow(SPEC_COMPRESSION / 2))
    error = (compressed[0] - compressed[1]).pow(2).sum((-2, -1))
    return _neg_ratio_db(compressed[1].pow(2).sum((-2, -1)), error, eps)


@functools.lru_cache(maxsize=None)
def _third_octave_matrix(dtype, device) -> torch.Tensor:
    """(bands, bins) 0/1 matrix summing the STFT bins of each one-third-octave band (built once
    per dtype and device, not on every training batch)."""
    freqs = torch.arange(ESTOI_FFT // 2 + 1, dtype=torch.float64) * ESTOI_SAMPLE_RATE / ESTOI_FFT
    centres = ESTOI_LOWEST_HZ * 2.0 ** (torch.arange(ESTOI_BANDS, dtype=torch.float64) / 3)
    low, high = centres * 2.0 ** (-1 / 6), centres * 2.0 ** (1 / 6)
    matrix = ((freqs >= low[:, None]) & (freqs < high[:, None])).to(dtype)
    return matrix.to(device)


def _band_envelopes(x: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(ESTOI_WINDOW, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, ESTOI_FFT, hop_length=ESTOI_HOP, win_length=ESTOI_WINDOW, window=window,
                      center=False, return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)
    return (bands @ power + 1e-12).sqrt()  # (B, bands, frames)


def _normalised(x: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    x = x - x.mean(dim, keepdim=True)
    return x / (x.norm(dim=dim, keepdim=True) + eps)


def _neg_estoi(est: torch.Tensor, ref: torch.Tensor, eps: float) -> torch.Tensor:
    if est.size(-1) < ESTOI_MIN_SAMPLES:
        raise ValueError(f"estoi needs signals of at least {ESTOI_MIN_SAMPLES} samples (one 384-ms segment "
                         f"at {ESTOI_SAMPLE_RATE} Hz), got {est.size(-1)}")
    bands = _third_octave_matrix(est.dtype, est.device)
    segments = []
    for x in (est, ref):
        # (B, bands, segments, frames): every 30-frame segment, normalised as eSTOI does.
        seg = _band_envelopes(x, bands).unfold(-1, ESTOI_SEGMENT_FRAMES, 1)
        segments.append(_normalised(_normalised(seg, -1, eps), 1, eps))
    correlation = (segments[0] * segments[1]).sum(1).mean(-1)  # (B, segments)
    return -correlation.mean(-1)


def distance(name: str, est: torch.Tensor, ref: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Whole-signal distance.

    Args:
        name: "snr", "sisdr", "mse", "cspec", "erb", "estoi" or "pesq".
        est: (B, T) estimate.
        ref: (B, T) reference.
        eps: added to both energies of a ratio.
    Returns:
        (B,) distance: dB for snr/sisdr/cspec/erb (negative SNR / SI-SDR / compressed spectral
        or ERB-band ratio), squared amplitude for mse, the negative eSTOI proxy for estoi, the negative
        raw MOS of the PESQ proxy for pesq.
    """
    _check_name(name)
    _check_pair(est, ref)
    if name == "mse":
        return (est - ref).pow(2).mean(-1)
    if name == "cspec":
        return _neg_cspec(est, ref, eps)
    if name == "erb":
        return _neg_erb(est, ref, eps)
    if name == "estoi":
        return _neg_estoi(est, ref, eps)
    if name == "pesq":
        return -pesq_proxy.raw_mos(est, ref)
    return _neg_sdr(_zero_mean(est), _zero_mean(ref), name == "sisdr", eps)


def min_samples(name: str) -> int:
    """The shortest signal that the whole-signal distance ``name`` accepts."""
    _check_name(name)
    return {"cspec": SPEC_MIN_SAMPLES, "erb": ERB_MIN_SAMPLES, "estoi": ESTOI_MIN_SAMPLES,
            "pesq": pesq_proxy.MIN_SAMPLES}.get(name, 1)


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale-invariant SDR in dB (higher is better); (B, T), (B, T) -> (B,)."""
    return -distance("sisdr", est, ref, eps=eps)


def frame_signal(x: torch.Tensor, frame_length: int = 1024, hop_length: int = 256) -> torch.Tensor:
    """Hann-windowed frames with the STFT framing (centred, reflect padding).

    Args:
        x: (B, T) signal, T > frame_length // 2 (reflect padding needs it).
        frame_length: frame (and window) length in samples.
        hop_length: frame shift in samples.
    Returns:
        (B, F, frame_length) windowed frames, F = T // hop_length + 1 for even frame_length.
    """
    if x.dim() != 2:
        raise ValueError(f"expected a (B, T) signal, got shape {tuple(x.shape)}")
    pad = frame_length // 2
    if x.size(-1) <= pad:
        raise ValueError(
            f"signal of {x.size(-1)} samples is too short for frames of {frame_length} "
            f"samples: reflect padding needs more than {pad} samples"
        )
    padded = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    frames = padded.unfold(-1, frame_length, hop_length)
    window = torch.hann_window(frame_length, periodic=True, dtype=x.dtype, device=x.device)
    return frames * window


def framewise_distance(
    name: str,
    est: torch.Tensor,
    ref: torch.Tensor,
    frame_length: int = 1024,
    hop_length: int = 256,
    eps: float = EPS,
) -> torch.Tensor:
    """Per-frame distance of the segmental loss.

    The mean over the whole signal is removed first (for every distance), then both signals
    are cut with :func:`frame_signal` and the distance is taken frame by frame.

    Args:
        name: "snr", "sisdr" or "mse".
        est: (B, T) estimate.
        ref: (B, T) reference.
        frame_length: frame length in samples (1024 in the paper).
        hop_length: hop in samples (256 in the paper).
        eps: added to both energies of a ratio.
    Returns:
        (B, F) per-frame distance, F = T // hop_length + 1; dB for snr/sisdr, and
        sum over the frame of the squared windowed error / frame_length for mse.
    """
    _check_name(name)
    if name in WHOLE_SIGNAL_ONLY:
        raise ValueError(f"distance '{name}' has no segmental version; use it with segmental: false")
    _check_pair(est, ref)
    est_frames = frame_signal(_zero_mean(est), frame_length, hop_length)
    ref_frames = frame_signal(_zero_mean(ref), frame_length, hop_length)
    if name == "mse":
        return (est_frames - ref_frames).pow(2).sum(-1) / frame_length
    return _neg_sdr(est_frames, ref_frames, name == "sisdr", eps)


def weighted_frame_mean(
    frame_losses: torch.Tensor, weights: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """DP reduction over frames: mean_t(w_t * l_t), not renormalised by sum_t w_t.

    Args:
        frame_losses: (B, F) per-frame losses.
        weights: (B, F) frame weights (detached here: no gradient reaches the predictor),
            or None for a plain frame mean.
    Returns:
        (B,) weighted frame mean.
    """
    if weights is None:
        return frame_losses.mean(-1)
    if weights.shape != frame_losses.shape:
        raise ValueError(
            f"frame weights of shape {tuple(weights.shape)} do not match frame losses of "
            f"shape {tuple(frame_losses.shape)}: the weights must use the same framing"
        )
    return (weights.detach() * frame_losses).mean(-1)
