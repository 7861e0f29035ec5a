"""Building blocks of the Conv-TasNet temporal convolutional network with a skip path.

Shapes follow PyTorch's Conv1d layout: (B, C, T) = (batch, channels, frames).

Normalisations (``norm_type``):
    gLN   global layer norm: statistics over all channels and frames (non-causal).
    cLN   cumulative layer norm of the Conv-TasNet paper: statistics over all channels and the
          frames up to the current one (causal).
    chLN  per-frame layer norm over channels (causal; called "cLN" in ESPnet and asteroid).
    BN    batch norm over batch and frames (non-causal while training).
"""

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.enh.layers.tcn import EPS as ESPNET_EPS
from espnet2.enh.layers.tcn import ChannelwiseLayerNorm, GlobalLayerNorm

NORM_TYPES = ("gLN", "cLN", "chLN", "BN")
CAUSAL_NORM_TYPES = ("cLN", "chLN")


class FusedGlobalLayerNorm(GlobalLayerNorm):
    """ESPnet's gLN (same parameters, state dict and epsilon) computed by one fused kernel.

    gLN is group norm with a single group; ``F.group_norm`` does it in one pass forward and
    one backward where ESPnet's six elementwise operations each walk the whole tensor
    (a ConvTasNet training step on CPU is about a fifth faster).
    """

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.shape != "BDT":
            return super().forward(y)
        return F.group_norm(y, 1, self.gamma.reshape(-1), self.beta.reshape(-1), ESPNET_EPS)


class CumulativeLayerNorm(torch.nn.Module):
    """Cumulative layer norm (cLN): frame t is normalised with statistics of frames 0..t.

    Args:
        channels: number of channels C; one gain and one bias per channel.
        eps: added to the variance before the square root.
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.gamma = torch.nn.Parameter(torch.ones(1, channels, 1))
        self.beta = torch.nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise x (B, C, T) -> (B, C, T)."""
        return self.forward_streaming(x, None)[0]

    def forward_streaming(
        self, x: torch.Tensor, state: Optional[Tuple[torch.Tensor, torch.Tensor, int]]
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor, int]]:
        """Normalise a chunk x (B, C, K) that follows the frames summarised by ``state``.

        state: (sum, sum of squares, frame count) of the earlier frames, or None at the start.
        """
        channels, frames = x.shape[1], x.shape[2]
        # Running sums over time in float64: E[x^2] - E[x]^2 cancels badly in float32 on
        # long inputs. The per-frame channel sums stay in the input dtype (cheap).
        sums = x.sum(dim=1, keepdim=True).double().cumsum(dim=-1)  # (B, 1, K)
        squares = x.pow(2).sum(dim=1, keepdim=True).double().cumsum(dim=-1)
        seen = 0
        if state is not None:
            sums, squares, seen = sums + state[0], squares + state[1], state[2]
        steps = torch.arange(seen + 1, seen + frames + 1, device=x.device, dtype=torch.float64)
        count = channels * steps
        mean = sums / count
        var = (squares / count - mean.pow(2)).clamp_min(0.0)
        y = self.gamma * (x - mean.to(x.dtype)) / torch.sqrt(var.to(x.dtype) + self.eps)
        return y + self.beta, (sums[..., -1:], squares[..., -1:], seen + frames)


def norm_streaming(norm: torch.nn.Module, x: torch.Tensor, state):
    """Apply a causal norm to a chunk (B, C, K); returns (output, new state)."""
    if isinstance(norm, CumulativeLayerNorm):
        return norm.forward_streaming(x, state)
    if isinstance(norm, ChannelwiseLayerNorm):
        return norm(x), None  # per frame: nothing to carry over
    raise ValueError(f"{type(norm).__name__} cannot be run chunk by chunk: it is not causal")


def make_norm(norm_type: str, channels: int) -> torch.nn.Module:
    """Normalisation layer for (B, C, T) inputs; 2*C parameters for every type."""
    if norm_type == "gLN":
        return FusedGlobalLayerNorm(channels)
    if norm_type == "cLN":
        return CumulativeLayerNorm(channels)
    if norm_type == "chLN":
        return ChannelwiseLayerNorm(channels)
    if norm_type == "BN":
        return torch.nn.BatchNorm1d(channels)
    raise ValueError(f"norm_type '{norm_type}' is not supported; choose one of {NORM_TYPES}")


class TCNBlock(torch.nn.Module):
    """One dilated block of the Conv-TasNet TCN, with a residual and a skip output.

    x (B, in_channels, T)
      -> 1x1 conv to H -> PReLU -> norm -> depthwise conv (kernel P, dilation d) -> PReLU -> norm
      -> residual: 1x1 conv to res_channels;  skip: 1x1 conv to skip_channels.
    Every convolution has a bias (as in asteroid's TDConvNet, which the paper's counts use).

    Args:
        in_channels: channels of the block input (B, or more when a condition is concatenated).
        hidden_channels: H.
        res_channels: channels of the residual output, the width of the residual stream.
        skip_channels: Sc.
        kernel_size: P.
        dilation: d; the block sees (P - 1) * d + 1 frames.
        norm_type: one of NORM_TYPES.
        causal: pad only on the left, so frame t never sees frames after t.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        res_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        norm_type: str = "gLN",
        causal: bool = False,
    ):
        super().__init__()
        span = (kernel_size - 1) * dilation
        # Explicit (left, right) padding keeps the length T for odd and even kernels alike.
        self.padding = (span, 0) if causal else (span // 2, span - span // 2)
        self.in_conv = torch.nn.Conv1d(in_channels, hidden_channels, 1)
        self.in_act = torch.nn.PReLU()
        self.in_norm = make_norm(norm_type, hidden_channels)
        self.depth_conv = torch.nn.Conv1d(
            hidden_channels,
            hidden_channels,
            kernel_size,
            dilation=dilation,
            groups=hidden_channels,
        )
        self.depth_act = torch.nn.PReLU()
        self.depth_norm = make_norm(norm_type, hidden_channels)
        self.res_conv = torch.nn.Conv1d(hidden_channels, res_channels, 1)
        self.skip_conv = torch.nn.Conv1d(hidden_channels, skip_channels, 1)

    @property
    def span(self) -> int:
        """Number of frames the depthwise convolution looks at minus one."""
        return sum(self.padding)

    def widen_input(self, extra_channels: int) -> None:
        """Accept ``extra_channels`` more input channels (e.g. a concatenated embedding).

        The existing weights are kept and the new input weights start at zero, so the widened
        block computes exactly what it did before until training moves them.
        """
        old = self.in_conv
        new = torch.nn.Conv1d(old.in_channels + extra_channels, old.out_channels, 1)
        new = new.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_channels] = old.weight
            new.bias.copy_(old.bias)
        self.in_conv = new

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, in_channels, T) -> residual (B, res_channels, T), skip (B, skip_channels, T)."""
        h = self.in_norm(self.in_act(self.in_conv(x)))
        h = self.depth_conv(F.pad(h, self.padding))
        h = self.depth_norm(self.depth_act(h))
        return self.res_conv(h), self.skip_conv(h)

    def forward_streaming(
        self, x: torch.Tensor, state: Optional[Dict]
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict]:
        """Causal block on a chunk x (B, in_channels, K) following the frames in ``state``.

        state: {"in_norm", "depth_norm": norm states, "history": (B, H, span) last depthwise
        inputs} or None at the start, where the history is the zero left padding.
        Returns residual (B, res_channels, K), skip (B, skip_channels, K), new state.
        """
        if self.padding[1] != 0:
            raise ValueError("TCNBlock: forward_streaming needs a causal block (causal=True)")
        state = state or {"in_norm": None, "depth_norm": None, "history": None}
        h, in_state = norm_streaming(self.in_norm, self.in_act(self.in_conv(x)), state["in_norm"])
        history = state["history"]
        if history is None:
            history = h.new_zeros(h.shape[0], h.shape[1], self.span)
        h = torch.cat([history, h], dim=-1)
        new_history = h[..., h.shape[-1] - self.span :]
        h, depth_state = norm_streaming(
            self.depth_norm, self.depth_act(self.depth_conv(h)), state["depth_norm"]
        )
        new_state = {"in_norm": in_state, "depth_norm": depth_state, "history": new_history}
        return self.res_conv(h), self.skip_conv(h), new_state
