"""On-the-fly two-stage mixing shared by the SSL objectives (methods.md, PART 1, 1.1).

Stage 1 (premixture): s~ = s + m at SNR_pre ~ U(0, 15) dB, simulating the "in-the-wild" noise
already in the user's recordings; skipped when the data are the user's own noisy recordings.
Stage 2 (injection): x~ = s~ + n at SNR_inj ~ U(-5, 5) dB measured against s~.
Then the whole batch (inputs and targets) is divided by one scalar, its max |x~|.

Optionally (:class:`TalkerInjector`) the injection also holds another person's voice: a model
trained to map s~ + n + (other talker) back to s~ learns to drop voices that are not its user's.
"""

from typing import List, Optional, Sequence, Tuple, Union

import torch

from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.data.mixing import mix_at_snr, noise_gain
from espnet2_pse.ssl.noise_bank import NoiseBank

SNR_DISTRIBUTIONS = ("uniform", "normal")
# Batch entry with each example's speaker index (data dir's utt2spk_index, type text_int).
SPEAKER_INDEX_KEY = "spk_index"


class SNRSampler:
    """Draws SNRs in dB from ``[low, high]``.

    ``uniform`` is the paper's choice; ``normal`` centres on the middle of the range with a
    standard deviation of a quarter of its width, clipped to the range.
    """

    def __init__(self, snr_range: Sequence[float], distribution: str = "uniform"):
        if len(snr_range) != 2 or snr_range[0] > snr_range[1]:
            raise ValueError(f"SNR range must be [low, high] in dB, got {snr_range}")
        if distribution not in SNR_DISTRIBUTIONS:
            raise ValueError(f"SNR distribution must be one of {SNR_DISTRIBUTIONS}, got '{distribution}'")
        self.low, self.high = float(snr_range[0]), float(snr_range[1])
        self.distribution = distribution

    def __call__(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.distribution == "uniform":
            u = torch.rand(n, generator=generator)
            return self.low + (self.high - self.low) * u
        centre, std = (self.low + self.high) / 2, (self.high - self.low) / 4
        return (centre + std * torch.randn(n, generator=generator)).clamp(self.low, self.high)


class TwoStageMixer:
    """Premixture (optional) and injection noise for a batch of speech crops."""

    def __init__(
        self,
        inject_noise_scp: Union[str, Sequence[str]],
        inject_snr_range: Sequence[float] = (-5.0, 5.0),
        premix_noise_scp: Optional[str] = None,
        premix_snr_range: Sequence[float] = (0.0, 15.0),
        snr_distribution: str = "uniform",
        sample_rate: int = 16000,
    ):
        self.inject_bank = NoiseBank(inject_noise_scp, sample_rate, role="injection noise")
        self.inject_snr = SNRSampler(inject_snr_range, snr_distribution)
        self.premix_bank = (
            NoiseBank(premix_noise_scp, sample_rate, role="premixture noise")
            if premix_noise_scp
            else None
        )
        self.premix_snr = SNRSampler(premix_snr_range, snr_distribution)

    def pseudo_source(self, speech: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, T) speech -> (B, T) pseudo-source s~ (the speech itself without a premixture bank)."""
        if self.premix_bank is None:
            return speech
        batch, length = speech.shape
        noise = self.premix_bank.sample(batch, length, generator).to(speech)
        return mix_at_snr(speech, noise, self.premix_snr(batch, generator).to(speech))

    def injection(
        self, batch: int, length: int, generator: torch.Generator
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(batch, length) injection noise crops and (batch,) SNRs in dB."""
        return self.inject_bank.sample(batch, length, generator), self.inject_snr(batch, generator)


class TalkerInjector:
    """Interfering talkers for a batch: speech of other voices added on top of (or instead of)
    the injection noise.

    Args:
        talker_scp: wav.scp (or a list pooled into one bank) of other voices' utterances; it must
            not hold the user's voice.
        prob: share of the examples that get one talker.
        tir_range: [low, high] target-to-interferer ratio in dB, against the pseudo-source.
        alone_prob: share of the talker examples whose injection noise is dropped (talker alone).
        distribution: "uniform" or "normal" (as :class:`SNRSampler`).
        sample_rate: Hz of the bank.
        utt2spk: the bank's Kaldi utt2spk, for banks that hold the batch's own speakers (a
            generalist's training voices): the target speakers are then given to
            :meth:`__call__` as indices into the sorted speaker names of this file (the
            ``utt2spk_index`` that :func:`espnet2_pse.data.kaldi_dir.write_speaker_index` writes),
            and no example gets its own voice as the talker. Like the bank's audio, it is read
            on first use, so building a trained model for inference never needs these files.
    """

    def __init__(
        self,
        talker_scp: Union[str, Sequence[str]],
        prob: float = 0.5,
        tir_range: Sequence[float] = (0.0, 10.0),
        alone_prob: float = 0.25,
        distribution: str = "uniform",
        sample_rate: int = 16000,
        utt2spk: Optional[str] = None,
    ):
        for name, value in (("talker_prob", prob), ("talker_alone_prob", alone_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.utt2spk = utt2spk
        self.speakers: Optional[List[str]] = None  # the sorted speaker names of utt2spk, once read
        self.bank = NoiseBank(talker_scp, sample_rate, role="interfering talker")
        self.tir = SNRSampler(tir_range, distribution)
        self.prob = prob
        self.alone_prob = alone_prob

    def __call__(self, source: torch.Tensor, generator: torch.Generator,
                 target_speakers: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T) pseudo-sources (and, with ``utt2spk``, their (B,) speaker indices) -> (B, T)
        scaled talker signal to add (zero rows for examples without a talker) and (B,) 0/1
        factor for the injection noise (0: talker alone)."""
        batch, length = source.shape
        has_talker = torch.rand(batch, generator=generator) < self.prob
        alone = has_talker & (torch.rand(batch, generator=generator) < self.alone_prob)
        talker = self.bank.sample(batch, length, generator, self._speaker_names(target_speakers, batch)).to(source)
        gain = noise_gain(source, talker, self.tir(batch, generator).to(source))
        talker = talker * gain * has_talker.to(source)[:, None]
        return talker, (~alone).to(source)

    def _speaker_names(self, target_speakers: Optional[torch.Tensor], batch: int) -> Optional[List[str]]:
        if self.utt2spk is None:
            return None
        if self.speakers is None:
            labels = read_table(self.utt2spk)
            self.speakers = sorted(set(labels.values()))
            self.bank.labels = labels
        if target_speakers is None:
            raise ValueError("the talker bank holds the training speakers (utt2spk given): the batch needs "
                             f"their indices as '{SPEAKER_INDEX_KEY}' (an utt2spk_index file of type text_int)")
        index = target_speakers.reshape(batch, -1)[:, 0].tolist()
        bad = [i for i in index if not 0 <= i < len(self.speakers)]
        if bad:
            raise ValueError(f"spk_index {bad[0]} is outside the {len(self.speakers)} speakers of the talkers' utt2spk")
        return [self.speakers[i] for i in index]


def scale_batch(*signals: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Divide every tensor by the max |value| of the first one (the network input), + 1e-8."""
    scale = signals[0].abs().max() + 1e-8
    return tuple(s / scale for s in signals)


# STFT of blend_with_teacher: 32 ms Hann windows at 16 kHz, 75 % overlap (exact overlap-add).
BLEND_FFT = 512


def blend_with_teacher(teacher: torch.Tensor, source: torch.Tensor, weight: float, sample_rate: int,
                       weight_above: Optional[float] = None, split_hz: float = 4000.0,
                       weight_noise: Optional[float] = None) -> torch.Tensor:
    """w * teacher + (1 - w) * source for (B, T) signals, w a share per STFT cell.

    - only ``weight``: w = weight everywhere, the plain time-domain blend;
    - ``weight_above``: w is ``weight`` up to half an octave under ``split_hz``, ``weight_above``
      from half an octave over it, and a raised cosine in log-frequency across that octave, so
      that no band edge rings;
    - ``weight_noise``: in each cell, w moves from that per-band share towards ``weight_noise``
      as the teacher's gain there, g = min(|teacher| / |source|, 1), falls: cells that the
      teacher keeps (speech) keep the band's share, cells that it removes (noise) take
      ``weight_noise``: w = w_band + (weight_noise - w_band) * (1 - g).
    """
    if weight_above is None and weight_noise is None:
        return weight * teacher + (1.0 - weight) * source
    window = torch.hann_window(BLEND_FFT, device=source.device, dtype=source.dtype)
    hop = BLEND_FFT // 4
    # Zero padding: the edges are filtered as the onsets they are, not as mirrored signal.
    spec_teacher, spec_source = (torch.stft(x, BLEND_FFT, hop, window=window, pad_mode="constant",
                                            return_complex=True) for x in (teacher, source))
    share = torch.full((spec_source.size(-2), 1), weight, device=source.device, dtype=source.dtype)
    if weight_above is not None:
        freqs = torch.linspace(0.0, sample_rate / 2, share.size(0), device=source.device, dtype=source.dtype)
        octaves = torch.log2(freqs.clamp_min(1e-3) / split_hz).clamp(-0.5, 0.5)
        ramp = 0.5 - 0.5 * torch.cos(torch.pi * (octaves + 0.5))
        share = share + (weight_above - weight) * ramp[:, None]
    if weight_noise is not None:
        gain = (spec_teacher.abs() / (spec_source.abs() + 1e-8)).clamp(max=1.0)
        share = share + (weight_noise - share) * (1.0 - gain)
    blended = spec_source + share * (spec_teacher - spec_source)
    return torch.istft(blended, BLEND_FFT, hop, window=window, length=source.size(-1))
