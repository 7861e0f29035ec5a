"""Frame-wise SNR predictor of Data Purification (DP), its training target and DP weights.

The predictor reads a (noisy) waveform and predicts, for every STFT frame, the SNR in dB of
that frame's speech against the rest. Trained once on generalist speakers
(``python -m espnet2_pse.bin.snr_predictor_train``), then frozen: DP weights each frame of the
segmental loss by w_t = sigmoid(predicted SNR of the pseudo-source in dB).

All three pieces (predictor STFT, :func:`frame_snr_target`, and the segmental loss of
``espnet2_pse.losses.distances``) use the same framing: Hann window, centred reflect padding,
F = T // hop_length + 1 frames for T samples.
"""

from typing import Optional

import torch

from espnet2_pse.losses.distances import EPS, frame_signal


class SNRPredictor(torch.nn.Module):
    """STFT magnitude -> unidirectional GRU -> Linear: frame SNR in dB.

    The paper's model is 3 layers x 1024 units (about 17.3 M parameters). Each input is
    divided by its RMS first, so the prediction does not depend on the signal level (the
    frame SNR itself is scale-invariant, and DP feeds batch-scaled pseudo-sources).

    Args:
        hidden_size: GRU units per layer.
        num_layers: GRU layers.
        frame_length: FFT size and window length in samples (513 bins for 1024).
        hop_length: frame hop in samples.
    """

    def __init__(
        self,
        hidden_size: int = 1024,
        num_layers: int = 3,
        frame_length: int = 1024,
        hop_length: int = 256,
    ):
        super().__init__()
        self.frame_length = frame_length
        self.hop_length = hop_length
        self.rnn = torch.nn.GRU(
            input_size=frame_length // 2 + 1,
            hidden_size=hidden_size,
            num_layers=num_layers,
            batch_first=True,
        )
        self.linear = torch.nn.Linear(hidden_size, 1)
        # Not persistent: the window is a constant, not a weight to save.
        self.register_buffer("window", torch.hann_window(frame_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a signal of ``num_samples`` samples (centred STFT framing)."""
        return num_samples // self.hop_length + 1

    def forward(
        self, speech: torch.Tensor, speech_lengths: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Predict frame SNRs.

        Args:
            speech: (B, T) waveform.
            speech_lengths: (B,) valid samples per example (the RMS normalisation ignores
                padding); None when every example is full length.
        Returns:
            (B, F) predicted SNR in dB, F = T // hop_length + 1.
        """
        if speech.dim() != 2:
            raise ValueError(f"SNRPredictor expects (B, T) audio, got shape {tuple(speech.shape)}")
        if speech_lengths is None:
            power = speech.pow(2).mean(-1, keepdim=True)
        else:
            lengths = speech_lengths.unsqueeze(1)
            valid = torch.arange(speech.size(1), device=speech.device) < lengths
            power = (speech.pow(2) * valid).sum(-1, keepdim=True) / lengths.clamp_min(1)
        speech = speech / torch.sqrt(power + EPS)
        spec = torch.stft(
            speech,
            n_fft=self.frame_length,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        magnitude = spec.abs().transpose(1, 2)  # (B, F, bins)
        hidden, _ = self.rnn(magnitude)
        return self.linear(hidden).squeeze(-1)


def frame_snr_target(
    clean: torch.Tensor,
    noisy: torch.Tensor,
    frame_length: int = 1024,
    hop_length: int = 256,
    min_db: float = -30.0,
    max_db: float = 30.0,
) -> torch.Tensor:
    """Per-frame SNR of ``noisy`` against its clean part, the predictor's training target.

    SNR_t = 10 log10( sum (w s)^2 / sum (w (s - x))^2 ) over the Hann-windowed frame t, with
    s the clean and x the noisy signal; no mean removal. Frames of silent speech or of no
    noise would be -inf / +inf dB: the result is clamped to [min_db, max_db].

    Args:
        clean: (B, T) clean speech s.
        noisy: (B, T) noisy signal x.
        frame_length: frame length in samples.
        hop_length: hop in samples.
        min_db: lower clamp in dB.
        max_db: upper clamp in dB.
    Returns:
        (B, F) frame SNR in dB, F = T // hop_length + 1.
    """
    if clean.shape != noisy.shape:
        raise ValueError(
            f"clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} differ in shape"
        )
    s = frame_signal(clean, frame_length, hop_length)
    n = frame_signal(clean - noisy, frame_length, hop_length)
    # eps is far below any audible frame energy; the clamp handles the degenerate frames.
    snr = 10.0 * torch.log10(s.pow(2).sum(-1).clamp_min(1e-20) / n.pow(2).sum(-1).clamp_min(1e-20))
    return snr.clamp(min_db, max_db)


def dp_weights(predictor: torch.nn.Module, pseudo_source: torch.Tensor) -> torch.Tensor:
    """DP frame weights w_t = sigmoid(predicted SNR in dB) of the pseudo-source.

    Computed without autograd, so no gradient ever reaches the (frozen) predictor.

    Args:
        predictor: an :class:`SNRPredictor` (on the device of ``pseudo_source``).
        pseudo_source: (B, T) pseudo-source s~ (after batch scaling).
    Returns:
        (B, F) weights in (0, 1), detached, F = T // hop_length + 1.
    """
    with torch.no_grad():
        return torch.sigmoid(predictor(pseudo_source)).detach()
