"""ESPnet's STFTEncoder / STFTDecoder, with torch's FFT or as real-valued DFT matrix products."""

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from espnet2_pse.export.framing import fit_length, frame_signal, overlap_add

# The envelope of squared windows is floored like torch.istft's NOLA check: only samples that
# are trimmed away (before the first centred frame) ever come near it.
_ENVELOPE_FLOOR = 1e-11


def _window(name, win_length: int, n_fft: int) -> torch.Tensor:
    """(n_fft,) analysis window as torch.stft applies it: periodic, zero-padded to the centre."""
    if name is None:
        window = torch.ones(win_length, dtype=torch.float64)
    else:
        window = getattr(torch, f"{name}_window")(win_length, dtype=torch.float64)
    left = (n_fft - win_length) // 2
    return F.pad(window, (left, n_fft - win_length - left))


class STFTFrontEnd(torch.nn.Module):
    """STFT analysis/synthesis of ESPnet's ``encoder: stft`` / ``decoder: stft``, time-major.

    Analysis: reflect-pad n_fft // 2 samples on both sides (``center``), frames of n_fft
    samples every hop, window, one-sided DFT: (B, T) -> (B, K, F), F = n_fft // 2 + 1,
    K = T // hop + 1. Synthesis: inverse one-sided DFT, window, overlap-add, divide by the
    overlap-added squared window, drop the padding: what ``torch.istft`` does.

    Two implementations (``use_fft``): torch.stft / torch.istft on complex tensors (the fast
    PyTorch path), or real-valued matrix products with fixed DFT bases, (n_fft, 2F) for
    analysis and (2F, n_fft) for synthesis (the exported graph; ONNX has no complex tensors).
    ``coded`` is then the complex STFT (B, K, F), or its real and imaginary parts side by side
    (B, K, 2F). Both give the same samples up to float rounding.

    Streaming (DFT bases only): the stream is the reflect-padded signal, so the first
    ``start_padding`` samples of the stream are x[pad], ..., x[1] (a caller needs pad + 1
    samples before it can start) and the output stream is ahead by the same amount: the first
    ``start_padding`` output samples are dropped. State: the last n_fft - hop input samples
    (``in_tail``), and the open n_fft - hop samples of the overlap-added output and of the
    squared-window envelope (``ola_tail``, ``env_tail``).

    Args:
        encoder: ESPnet ``STFTEncoder``; decoder: the matching ``STFTDecoder``.
        use_fft: start with the torch.stft path (see :attr:`use_fft`).
    """

    kind = "stft"

    def __init__(self, encoder, decoder, use_fft: bool = True):
        super().__init__()
        stft, istft = encoder.stft, decoder.stft
        fields = ("n_fft", "win_length", "hop_length", "window", "center", "normalized", "onesided")
        mismatch = [f for f in fields if getattr(stft, f) != getattr(istft, f)]
        if mismatch:
            raise ValueError(f"STFTFrontEnd: encoder and decoder differ in {', '.join(mismatch)}")
        if stft.normalized or not stft.onesided:
            raise ValueError("STFTFrontEnd: only normalized=false, onesided=true STFTs are supported")
        for module in (encoder, decoder):
            if getattr(module, "spec_transform_type", None) not in (None, "none"):
                raise ValueError(
                    f"STFTFrontEnd: spec_transform_type '{module.spec_transform_type}' of "
                    f"{type(module).__name__} is not supported"
                )
        self.n_fft, self.hop, self.win_length = stft.n_fft, stft.hop_length, stft.win_length
        self.window_name, self.center = stft.window, stft.center
        self.bins = self.n_fft // 2 + 1
        self.use_fft = use_fft

        window = _window(self.window_name, self.win_length, self.n_fft)  # float64 (n_fft,)
        n = torch.arange(self.n_fft, dtype=torch.float64)
        k = torch.arange(self.bins, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(n, k) / self.n_fft  # (n_fft, F)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # Analysis: X_k = sum_n w[n] x[n] exp(-2 pi i k n / N).
        analysis = torch.cat([window[:, None] * cos, -window[:, None] * sin], dim=1)
        # Synthesis (irfft): bins 1 .. N/2 - 1 stand for their mirror images too; the imaginary
        # parts of bins 0 and N/2 are ignored, as a C2R transform does. Then the window.
        weight = torch.full((self.bins,), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if self.n_fft % 2 == 0:
            weight[-1] = 1.0
        sin_part = -sin * weight
        sin_part[:, 0] = 0.0
        if self.n_fft % 2 == 0:
            sin_part[:, -1] = 0.0
        synthesis = torch.cat([cos * weight, sin_part], dim=1).t() * window / self.n_fft
        # Linear-layer layout (out, in).
        self.register_buffer("analysis", analysis.t().float().contiguous())  # (2F, n_fft)
        self.register_buffer("synthesis", synthesis.t().float().contiguous())  # (n_fft, 2F)
        self.register_buffer("window_sq", (window**2).float())  # (n_fft,)
        stft_window = window[(self.n_fft - self.win_length) // 2 :][: self.win_length]
        self.register_buffer("stft_window", stft_window.float())  # (win_length,)

    # ------------------------------------------------------------------ sizes
    @property
    def feature_dim(self) -> int:
        return self.bins

    @property
    def start_padding(self) -> int:
        return self.n_fft // 2 if self.center else 0

    @property
    def tail(self) -> int:
        return self.n_fft - self.hop

    @property
    def min_samples(self) -> int:
        return self.n_fft // 2 + 1 if self.center else self.n_fft

    def latency_samples(self) -> int:
        """Algorithmic latency: a hop of output is final once a whole window has arrived."""
        return self.n_fft

    # ------------------------------------------------------------------ whole signals
    def analyze(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> (coded, magnitude (B, K, F)); see the class docstring for ``coded``."""
        if self.use_fft:
            spec = torch.stft(
                x, self.n_fft, self.hop, self.win_length, self.stft_window, center=self.center,
                pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
            ).transpose(1, 2)
            return spec, spec.abs()
        if self.center:
            pad = self.n_fft // 2
            x = F.pad(x[:, None, :], (pad, pad), mode="reflect")[:, 0, :]
        return self._dft(frame_signal(x, self.n_fft, self.hop))

    def _dft(self, frames: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        coded = F.linear(frames, self.analysis)  # (B, K, 2F)
        re, im = coded[..., : self.bins], coded[..., self.bins :]
        return coded, torch.sqrt(re * re + im * im)

    def _frames(self, coded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked (B, K, 2F) -> windowed time frames (B, K, n_fft)."""
        return F.linear(coded * torch.cat([mask, mask], dim=-1), self.synthesis)

    def _envelope(self, frames: torch.Tensor) -> torch.Tensor:
        """(1, (K - 1) * hop + n_fft) overlap-added squared window of K frames."""
        count = frames.shape[1]
        return overlap_add(self.window_sq.expand(1, count, self.n_fft), self.hop)

    def synthesize(self, coded: torch.Tensor, mask: torch.Tensor, length) -> torch.Tensor:
        """Masked STFT -> (B, length) samples."""
        if torch.is_complex(coded):
            return torch.istft(
                (coded * mask).transpose(1, 2), self.n_fft, self.hop, self.win_length,
                self.stft_window, center=self.center, normalized=False, onesided=True,
                length=length, return_complex=False,
            )
        frames = self._frames(coded, mask)
        y = overlap_add(frames, self.hop) / self._envelope(frames).clamp_min(_ENVELOPE_FLOOR)
        return fit_length(y[:, self.start_padding :], length, self.hop)

    # ------------------------------------------------------------------ streams
    def stream_state_shapes(self, batch: int) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
        shape = (batch, self.tail)
        return {name: (shape, torch.float32) for name in ("in_tail", "ola_tail", "env_tail")}

    def initial_stream_state(self, padded_start: torch.Tensor) -> Dict[str, torch.Tensor]:
        """State before the first chunk, from the first ``tail`` samples of the padded stream."""
        zeros = torch.zeros_like(padded_start)
        return {"in_tail": padded_start.clone(), "ola_tail": zeros, "env_tail": zeros.clone()}

    def analyze_stream(self, hops: torch.Tensor, state: Dict[str, torch.Tensor]):
        """(B, K * hop) new padded-stream samples -> coded (B, K, 2F), magnitude, new in_tail."""
        buffer = torch.cat([state["in_tail"], hops], dim=1)
        coded, magnitude = self._dft(frame_signal(buffer, self.n_fft, self.hop))
        return coded, magnitude, {"in_tail": buffer[:, buffer.shape[1] - self.tail :]}

    def synthesize_stream(self, coded, mask, state: Dict[str, torch.Tensor]):
        """K masked frames -> (B, K * hop) final output samples and the new tails."""
        frames = self._frames(coded, mask)
        y = overlap_add(frames, self.hop)  # (B, K * hop + tail)
        env = self._envelope(frames).expand(y.shape[0], -1)
        y = torch.cat([y[:, : self.tail] + state["ola_tail"], y[:, self.tail :]], dim=1)
        env = torch.cat([env[:, : self.tail] + state["env_tail"], env[:, self.tail :]], dim=1)
        done = y.shape[1] - self.tail
        out = y[:, :done] / env[:, :done].clamp_min(_ENVELOPE_FLOOR)
        return out, {"ola_tail": y[:, done:], "env_tail": env[:, done:]}

    def flush(self, state: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The last n_fft - hop output samples, once the stream has ended."""
        return state["ola_tail"] / state["env_tail"].clamp_min(_ENVELOPE_FLOOR)
