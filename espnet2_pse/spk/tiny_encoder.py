"""A ~150k-parameter speaker encoder meant to run inside the enhancer at inference.

log-mel -> strided input conv -> depthwise-separable dilated TDNN blocks (residual)
-> attentive statistics pooling -> linear projection to the teacher's dimension -> L2 norm.

The projection into the *teacher's* space matters: the speaker-conditioned separator is
trained on teacher embeddings and is not retrained for the student (methods.md, paper 2).
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
import torchaudio

from espnet2_pse.spk.abs_student import AbsSpkStudent

LOG_EPS = 1e-6


class LogMel(torch.nn.Module):
    """(B, T) waveform -> (B, n_mels, F) log-mel energies with per-row mean removed.

    Mean removal over the valid frames is a cepstral-mean-normalisation stand-in: it takes
    out the channel/microphone colouring, which the student must ignore.
    """

    def __init__(self, sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max):
        super().__init__()
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=f_min,
            f_max=f_max,
            n_mels=n_mels,
            window_fn=torch.hamming_window,
        )

    def frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Frame count for a (centred) STFT of ``num_samples`` samples."""
        return torch.div(num_samples, self.hop_length, rounding_mode="floor") + 1

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor):
        # Mel energies are computed in float32 even under autocast: log of fp16 underflows.
        with torch.autocast(device_type=speech.device.type, enabled=False):
            feats = torch.log(self.mel(speech.float()) + LOG_EPS)
        lengths = self.frames(speech_lengths).clamp(max=feats.size(-1))
        mask = _mask(lengths, feats.size(-1)).unsqueeze(1)
        mean = (feats * mask).sum(-1, keepdim=True) / lengths.view(-1, 1, 1)
        return (feats - mean) * mask, lengths


class SeparableTDNNBlock(torch.nn.Module):
    """Residual depthwise dilated conv + pointwise conv, (B, C, F) -> (B, C, F)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.depthwise = torch.nn.Conv1d(
            channels,
            channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
            groups=channels,
        )
        self.pointwise = torch.nn.Conv1d(channels, channels, 1)
        self.norm = torch.nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm(F.relu(self.pointwise(self.depthwise(x))))


class AttentiveStatsPooling(torch.nn.Module):
    """Attention-weighted mean and std over valid frames, (B, C, F) -> (B, 2C).

    The attention sees each frame together with the utterance's global mean/std (as in
    ECAPA-TDNN), through a bottleneck of ``attention_channels`` so the layer stays small.
    """

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.attention = torch.nn.Sequential(
            torch.nn.Conv1d(3 * channels, attention_channels, 1),
            torch.nn.Tanh(),
            torch.nn.Conv1d(attention_channels, channels, 1),
        )

    @staticmethod
    def _stats(x, weights):
        mean = (x * weights).sum(-1)
        var = (x.pow(2) * weights).sum(-1) - mean.pow(2)
        return mean, var.clamp(min=1e-4).sqrt()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = _mask(lengths, x.size(-1)).unsqueeze(1)  # (B, 1, F)
        uniform = mask / lengths.view(-1, 1, 1)
        mean, std = self._stats(x, uniform)
        frames = x.size(-1)
        mean_t, std_t = (s.unsqueeze(-1).expand(-1, -1, frames) for s in (mean, std))
        context = torch.cat([x, mean_t, std_t], dim=1)
        scores = self.attention(context).masked_fill(mask == 0, float("-inf"))
        mean, std = self._stats(x, torch.softmax(scores, dim=-1))
        return torch.cat([mean, std], dim=1)


class TinySpeakerEncoder(AbsSpkStudent):
    """Small log-mel TDNN speaker encoder with attentive statistics pooling.

    With the defaults it has 152,432 parameters (goal: at most 160k) and runs at 50 frames
    per second after the strided input conv.

    Args:
        embed_dim: output dimension D; set it to the teacher's (192 for ECAPA / RawNet3).
        sample_rate: Hz.
        n_fft, win_length, hop_length: STFT sizes in samples (25 ms / 10 ms at 16 kHz).
        n_mels: mel bands; f_min, f_max: band edges in Hz.
        channels: width C of the TDNN blocks.
        input_kernel: kernel of the input conv; subsample: its stride (frame-rate reduction).
        kernel_size, dilations: depthwise kernel and one dilation per residual block.
        attention_channels: bottleneck of the pooling attention.
    """

    def __init__(
        self,
        embed_dim: int = 192,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        channels: int = 128,
        input_kernel: int = 5,
        subsample: int = 2,
        kernel_size: int = 3,
        dilations: Sequence[int] = (2, 3, 4),
        attention_channels: int = 48,
    ):
        super().__init__()
        if kernel_size % 2 == 0 or input_kernel % 2 == 0:
            raise ValueError(
                f"kernel_size ({kernel_size}) and input_kernel ({input_kernel}) must be odd "
                "so that convolutions keep frames centred"
            )
        self.embed_dim = embed_dim
        self.sample_rate = sample_rate
        self.subsample = subsample
        self.frontend = LogMel(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max)
        self.input_conv = torch.nn.Conv1d(
            n_mels, channels, input_kernel, stride=subsample, padding=input_kernel // 2
        )
        self.input_norm = torch.nn.BatchNorm1d(channels)
        self.blocks = torch.nn.ModuleList(
            SeparableTDNNBlock(channels, kernel_size, d) for d in dilations
        )
        self.pooling = AttentiveStatsPooling(channels, attention_channels)
        self.projection_norm = torch.nn.BatchNorm1d(2 * channels)
        self.projection = torch.nn.Linear(2 * channels, embed_dim)

    def output_size(self) -> int:
        return self.embed_dim

    def forward(
        self, speech: torch.Tensor, speech_lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """(B, T) waveform (+ (B,) lengths in samples) -> (B, D) unit-norm embeddings."""
        if speech.dim() != 2:
            raise ValueError(
                f"speech must be (B, T) mono waveforms, got shape {tuple(speech.shape)}"
            )
        if speech_lengths is None:
            speech_lengths = torch.full(
                (speech.size(0),), speech.size(1), dtype=torch.long, device=speech.device
            )
        feats, lengths = self.frontend(speech, speech_lengths.to(speech.device).long())
        x = self.input_norm(F.relu(self.input_conv(feats.to(speech.dtype))))
        # Same rounding as the strided conv with padding k//2 (odd k): ceil(F / stride).
        lengths = torch.div(lengths - 1, self.subsample, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=1, max=x.size(-1))
        for block in self.blocks:
            x = block(x)
        pooled = self.pooling(x, lengths)
        return F.normalize(self.projection(self.projection_norm(pooled)), dim=-1)


def _mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) float mask, 1 on valid positions."""
    return (torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]).float()
