"""ConvTasNet normalisations in the time-major layout (B, T, C), split into statistics and affine.

Every norm of ConvTasNetSkip is y = gamma * (x - mean) * inv_std + beta with statistics
    gLN  (global)      over all frames and channels of an item: (B, 1, 1);
    cLN  (cumulative)  over the channels of frames 0..t: (B, T, 1);
    chLN (frame)       over the channels of frame t: (B, T, 1);
    BN   (static)      running statistics per channel, known before the input is.
A 1x1 convolution W, b after a norm is linear, so it can absorb the affine part:
    W y + b = inv_std * ((W gamma) x - mean * (W gamma) 1) + (W beta + b),
which replaces normalising the (B, T, C) input by a few operations on the (B, T, C_out)
output (C_out is 8-64 where C is 512 for the conv encoder's input norm). For gLN and BN the
statistics are per item, so they even fold into the weight: one matrix product with a bias.
The algebra is exact; the results agree with the modules up to float rounding.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.enh.layers.tcn import EPS as ESPNET_EPS
from espnet2.enh.layers.tcn import ChannelwiseLayerNorm, GlobalLayerNorm

from espnet2_pse.export.framing import eager
from espnet2_pse.separators.tcn_layers import CumulativeLayerNorm

Stats = Optional[Tuple[torch.Tensor, torch.Tensor]]


def _mean_square(centered: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of squares along ``dim`` (kept); overwrites ``centered`` outside export."""
    squared = centered.mul_(centered) if eager() else centered * centered
    return squared.mean(dim=dim, keepdim=True)


class FoldedNorm(torch.nn.Module):
    """Statistics and affine parameters of one norm module, for (B, T, C) inputs.

    Args:
        norm: ESPnet ``GlobalLayerNorm`` / ``ChannelwiseLayerNorm``, our
            ``CumulativeLayerNorm`` or a ``BatchNorm1d`` with running statistics (eval mode).
        index: position of a cumulative norm's running sums in the packed stream state.
    """

    def __init__(self, norm: torch.nn.Module, index: int = 0):
        super().__init__()
        self.index = index
        if isinstance(norm, torch.nn.BatchNorm1d):
            if norm.running_mean is None:
                raise ValueError("FoldedNorm: BatchNorm1d without running statistics cannot be folded")
            self.kind = "static"
            scale = torch.rsqrt(norm.running_var.detach() + norm.eps)
            if norm.affine:
                scale = scale * norm.weight.detach()
            shift = -norm.running_mean.detach() * scale
            if norm.affine:
                shift = shift + norm.bias.detach()
            gamma, beta, self.eps = scale, shift, norm.eps
        elif isinstance(norm, (GlobalLayerNorm, ChannelwiseLayerNorm, CumulativeLayerNorm)):
            if getattr(norm, "shape", "BDT") != "BDT":
                raise ValueError(f"FoldedNorm: {type(norm).__name__} with shape {norm.shape} is not supported")
            self.kind = ("global" if isinstance(norm, GlobalLayerNorm)
                         else "frame" if isinstance(norm, ChannelwiseLayerNorm) else "cumulative")
            gamma, beta = norm.gamma.detach().reshape(-1), norm.beta.detach().reshape(-1)
            self.eps = norm.eps if isinstance(norm, CumulativeLayerNorm) else ESPNET_EPS
        else:
            raise ValueError(f"FoldedNorm: cannot fold a {type(norm).__name__}")
        self.register_buffer("gamma", gamma.float().clone())  # (C,); BN: the whole scale
        self.register_buffer("beta", beta.float().clone())  # (C,); BN: the whole shift

    @property
    def cumulative(self) -> bool:
        return self.kind == "cumulative"

    def stats(self, x: torch.Tensor, sums: Optional[torch.Tensor] = None, seen: Optional[torch.Tensor] = None):
        """Statistics of x (B, T, C): ((mean, inv_std), new running sums) or (None, None) for BN.

        Cumulative norms only: ``sums`` (B, 2) float64 sum and sum of squares of the earlier
        frames and ``seen`` (1,) float64 their count (None at the start of a signal).
        """
        if self.kind == "static":
            return None, None
        if self.kind == "global":
            # Two passes as ESPnet's gLN, over the flattened item: torch reduces one flat axis
            # much faster than two, and squares faster by a product than by pow(2).
            flat = x.reshape(x.shape[0], -1)
            mean = flat.mean(dim=1, keepdim=True)
            var = _mean_square(flat - mean, dim=1)
            return (mean[..., None], torch.rsqrt(var + self.eps)[..., None]), None
        if self.kind == "frame":
            mean = x.mean(dim=-1, keepdim=True)
            return (mean, torch.rsqrt(_mean_square(x - mean, dim=-1) + self.eps)), None
        # Running sums in float64, as CumulativeLayerNorm: E[x^2] - E[x]^2 cancels in float32.
        total = torch.cumsum(x.sum(dim=-1).double(), dim=1)  # (B, T)
        squares = torch.cumsum((x * x).sum(dim=-1).double(), dim=1)
        steps = torch.arange(1, x.shape[1] + 1, dtype=torch.float64, device=x.device)
        if sums is not None:
            total, squares = total + sums[:, 0:1], squares + sums[:, 1:2]
            steps = steps + seen
        count = steps * x.shape[-1]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0.0)
        new_sums = torch.stack([total[:, -1], squares[:, -1]], dim=1)  # (B, 2)
        inv = torch.rsqrt(var.to(x.dtype) + self.eps)
        return (mean.to(x.dtype)[..., None], inv[..., None]), new_sums

    def apply(self, x: torch.Tensor, stats: Stats, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The normalised (B, T, C) input, for layers the affine part cannot fold into.

        ``out``: a (B, T, C) tensor (or view) to write into, outside export.
        """
        extra = {} if out is None else {"out": out}
        if stats is None:
            return torch.addcmul(self.beta, x, self.gamma, **extra)
        mean, inv = stats
        if self.kind == "global":
            scale = inv * self.gamma  # (B, 1, C)
            return torch.addcmul(self.beta - mean * scale, x, scale, **extra)
        return torch.addcmul(self.beta, (x - mean) * inv, self.gamma, **extra)


class NormLinear(torch.nn.Module):
    """A norm followed by a 1x1 convolution, computed on the raw input (see the module docstring).

    Args:
        norm: the :class:`FoldedNorm` in front.
        weight: (C_out, C) convolution weight; bias: (C_out,).
    """

    def __init__(self, norm: FoldedNorm, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.kind = norm.kind
        weight, bias = weight.detach().float(), bias.detach().float()
        scaled = weight * norm.gamma  # W gamma
        self.register_buffer("bias", bias + weight @ norm.beta)  # W beta + b
        self.register_buffer("weight", scaled.contiguous())  # (C_out, C)
        if self.kind != "static":
            self.register_buffer("row_sums", scaled.sum(dim=1))  # (W gamma) 1

    def forward(self, x: torch.Tensor, stats: Stats) -> torch.Tensor:
        """x (B, T, C) and its norm's statistics -> (B, T, C_out)."""
        if self.kind == "static":
            return F.linear(x, self.weight, self.bias)
        mean, inv = stats
        if self.kind == "global":
            bias = self.bias - (inv * mean) * self.row_sums  # (B, 1, C_out)
            if eager() and x.shape[0] == 1:
                # One item: scale the (C_out, C) weight instead of the (T, C_out) output.
                return F.linear(x, inv.reshape(()) * self.weight, bias.reshape(-1))
            # ONNX Runtime prepacks a constant weight, so the graph scales the output.
            return inv * F.linear(x, self.weight) + bias
        return inv * (F.linear(x, self.weight) - mean * self.row_sums) + self.bias
