"""ESPnet's ConvEncoder / ConvDecoder as matrix products, for whole signals and streams."""

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from espnet2_pse.export.framing import eager, fit_length, frame_signal, overlap_add


class ConvFrontEnd(torch.nn.Module):
    """Learned filterbank of ESPnet's ``encoder: conv`` / ``decoder: conv``, time-major.

    Encoder: frames of L = kernel_size samples every S = stride samples (no padding), times the
    (L, N) filters, then ReLU: (B, T) -> (B, K, N), K = (T - L) // S + 1. Decoder: masked
    (B, K, N) times the (N, L) filters, overlap-added every S samples and zero-padded to T,
    which is what ``ConvTranspose1d(..., output_size=T)`` computes. The mask network sees the
    encoder output itself (it is real and non-negative).

    Streaming: sample n of the stream is sample n of the signal (``start_padding`` 0). The
    caller's state holds the last L - S input samples (``in_tail``; initially the first L - S
    samples of the signal) and the L - S output samples still being overlap-added
    (``ola_tail``; initially zeros). Each chunk of K * S samples completes K frames and K * S
    output samples; the output lags the input by L - S samples plus one hop of buffering.

    Args:
        encoder: ESPnet ``ConvEncoder``.
        decoder: ESPnet ``ConvDecoder`` with the same kernel_size and stride.
    """

    kind = "conv"

    def __init__(self, encoder, decoder):
        super().__init__()
        weight = encoder.conv1d.weight.detach()  # (N, 1, L)
        dec = decoder.convtrans1d.weight.detach()  # (N, 1, L)
        if (decoder.kernel_size, decoder.stride) != (encoder.kernel_size, encoder.stride):
            raise ValueError(
                f"ConvFrontEnd: decoder kernel_size/stride {decoder.kernel_size}/{decoder.stride} "
                f"differ from the encoder's {encoder.kernel_size}/{encoder.stride}"
            )
        self.frame, self.hop = int(encoder.kernel_size), int(encoder.stride)
        self.channels = weight.shape[0]
        # Linear-layer layout (out, in): torch picks faster kernels for these skinny products.
        self.register_buffer("enc_weight", weight[:, 0, :].contiguous())  # (N, L)
        self.register_buffer("dec_weight", dec[:, 0, :].t().contiguous())  # (L, N)

    # ------------------------------------------------------------------ sizes
    @property
    def feature_dim(self) -> int:
        return self.channels

    @property
    def start_padding(self) -> int:
        """Samples the stream is padded with before sample 0 (none: no padding)."""
        return 0

    @property
    def tail(self) -> int:
        """L - S: input samples kept between chunks, and output samples still open."""
        return self.frame - self.hop

    @property
    def min_samples(self) -> int:
        return self.frame

    def latency_samples(self) -> int:
        """Algorithmic latency: one output block needs a whole frame of input (the kernel)."""
        return self.frame

    # ------------------------------------------------------------------ whole signals
    def analyze(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T) -> (coded (B, K, N), magnitude (B, K, N)); both are the encoder output."""
        coded = F.linear(frame_signal(x, self.frame, self.hop), self.enc_weight)
        coded = coded.relu_() if eager() else torch.relu(coded)
        return coded, coded

    def synthesize(self, coded: torch.Tensor, mask: torch.Tensor, length) -> torch.Tensor:
        """Masked encoder output -> (B, length) samples (eager mode: ``mask`` is overwritten)."""
        masked = mask.mul_(coded) if eager() else coded * mask
        frames = F.linear(masked, self.dec_weight)  # (B, K, L)
        return fit_length(overlap_add(frames, self.hop), length, self.hop)

    # ------------------------------------------------------------------ streams
    def stream_state_shapes(self, batch: int) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
        return {
            "in_tail": ((batch, self.tail), torch.float32),
            "ola_tail": ((batch, self.tail), torch.float32),
        }

    def initial_stream_state(self, padded_start: torch.Tensor) -> Dict[str, torch.Tensor]:
        """State before the first chunk, from the first ``tail`` samples (B, L - S) of the stream."""
        return {"in_tail": padded_start.clone(), "ola_tail": torch.zeros_like(padded_start)}

    def analyze_stream(self, hops: torch.Tensor, state: Dict[str, torch.Tensor]):
        """(B, K * S) new samples -> coded, magnitude (B, K, N) and the new ``in_tail``."""
        buffer = torch.cat([state["in_tail"], hops], dim=1)
        coded, magnitude = self.analyze(buffer)
        return coded, magnitude, {"in_tail": buffer[:, buffer.shape[1] - self.tail :]}

    def synthesize_stream(self, coded, mask, state: Dict[str, torch.Tensor]):
        """K masked frames -> (B, K * S) final output samples and the new ``ola_tail``."""
        frames = F.linear(coded * mask, self.dec_weight)
        y = overlap_add(frames, self.hop)  # (B, K * S + tail)
        y = torch.cat([y[:, : self.tail] + state["ola_tail"], y[:, self.tail :]], dim=1)
        done = y.shape[1] - self.tail
        return y[:, :done], {"ola_tail": y[:, done:]}

    def flush(self, state: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The last L - S output samples, once the stream has ended."""
        return state["ola_tail"]
