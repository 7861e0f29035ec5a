"""ConvTasNetSkip's mask network for inference: time-major, norms folded, state explicit."""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from espnet2_pse.export.framing import eager
from espnet2_pse.export.norms import FoldedNorm, NormLinear
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip

# Keys of the stream state of the mask network (see FusedTCN.forward).
HISTORY, NORM_SUMS, FRAMES_SEEN = "tcn_history", "norm_sums", "frames_seen"


class _PReLU(torch.nn.Module):
    """A trained PReLU on the last (channel) axis, its slope fixed.

    One slope (ConvTasNet's default) becomes a leaky ReLU with a constant slope: the same
    function, and ONNX Runtime runs LeakyRelu many times faster than PRelu with a broadcast
    slope. Per-channel slopes use max(x, 0) + slope * min(x, 0).
    """

    def __init__(self, prelu: torch.nn.PReLU):
        super().__init__()
        weight = prelu.weight.detach().float().reshape(-1)
        self.slope = float(weight[0]) if weight.numel() == 1 else None
        self.register_buffer("weight", weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slope is not None:  # in place on the fresh products it follows, outside export
            return F.leaky_relu(x, self.slope, inplace=eager())
        return x.clamp_min(0.0) + self.weight * x.clamp_max(0.0)


class _FusedBlock(torch.nn.Module):
    """One TCNBlock: 1x1 -> PReLU -> norm -> depthwise -> PReLU -> [norm + res/skip 1x1s]."""

    def __init__(self, block, in_index: int, depth_index: int, last: bool):
        super().__init__()
        self.in_conv = torch.nn.Linear(block.in_conv.in_channels, block.in_conv.out_channels)
        self.in_conv.load_state_dict({"weight": block.in_conv.weight[..., 0], "bias": block.in_conv.bias})
        self.in_act = _PReLU(block.in_act)
        self.in_norm = FoldedNorm(block.in_norm, in_index)
        conv = block.depth_conv
        self.dilation, self.kernel = conv.dilation[0], conv.kernel_size[0]
        self.left, self.right = block.padding
        self.register_buffer("taps", conv.weight.detach()[:, 0, :].t().contiguous())  # (P, H)
        self.register_buffer("depth_bias", conv.bias.detach().clone())
        self.depth_act = _PReLU(block.depth_act)
        self.depth_norm = FoldedNorm(block.depth_norm, depth_index)
        # The last block's residual output feeds nothing: only its skip conv is computed.
        convs = [block.skip_conv] if last else [block.res_conv, block.skip_conv]
        self.res_channels = 0 if last else block.res_conv.out_channels
        weight = torch.cat([c.weight[..., 0] for c in convs], dim=0)
        self.out = NormLinear(self.depth_norm, weight, torch.cat([c.bias for c in convs]))

    @property
    def span(self) -> int:
        return self.left + self.right

    def forward(self, x: torch.Tensor, history: Optional[torch.Tensor], sums, seen):
        """x (B, T, Bn) -> (residual (B, T, Bn) or None, skip (B, T, Sc), new history, sums).

        ``history`` (B, span, H): the last normalised depthwise inputs (causal streams), or
        None for zero padding. ``sums``: {norm index: (B, 2)} running sums of cumulative norms.
        """
        h = self.in_act(self.in_conv(x))
        stats, sums[self.in_norm.index] = self.in_norm.stats(h, sums.get(self.in_norm.index), seen)
        if history is None and eager():
            # Normalise straight into the zero-padded buffer: one pass less than F.pad.
            batch, frames, channels = h.shape
            padded = h.new_empty(batch, frames + self.span, channels)
            padded[:, : self.left].zero_()
            padded[:, self.left + frames :].zero_()
            self.in_norm.apply(h, stats, out=padded[:, self.left : self.left + frames])
        elif history is None:
            padded = F.pad(self.in_norm.apply(h, stats), (0, 0, self.left, self.right))
        else:
            padded = torch.cat([history, self.in_norm.apply(h, stats)], dim=1)
        new_history = padded[:, padded.shape[1] - self.span :] if history is not None else None
        length = padded.shape[1] - self.span
        d = torch.addcmul(self.depth_bias, padded[:, :length], self.taps[0])
        for p in range(1, self.kernel):
            start = p * self.dilation
            if eager():
                d.addcmul_(padded[:, start : start + length], self.taps[p])
            else:
                d = d + padded[:, start : start + length] * self.taps[p]
        d = self.depth_act(d)
        stats, sums[self.depth_norm.index] = self.depth_norm.stats(d, sums.get(self.depth_norm.index), seen)
        out = self.out(d, stats)
        if self.res_channels == 0:
            return None, out, new_history
        return out[..., : self.res_channels], out[..., self.res_channels :], new_history


class FusedTCN(torch.nn.Module):
    """Inference-only copy of a :class:`ConvTasNetSkip` mask network (first speaker's mask).

    features (B, T, N) -> mask (B, T, N), the same as the separator's ``mask_spk1`` up to float
    rounding. The 1x1 convolutions are matrix products on the time-major layout, the input
    norm is folded into the bottleneck and every depthwise norm into the residual and skip
    convolutions (see :mod:`espnet2_pse.export.norms`), and each block computes its residual
    and skip outputs in one product.

    Causal models also run on a stream, chunk by chunk, with explicit state (see
    :meth:`initial_state`); any chunk of K >= 1 frames gives the frames of the whole signal.

    Args:
        separator: a ConvTasNetSkip (not a subclass: speaker-conditioned ones need more inputs).
    """

    def __init__(self, separator: ConvTasNetSkip):
        super().__init__()
        if type(separator) is not ConvTasNetSkip:
            raise ValueError(
                f"FusedTCN: {type(separator).__name__} is not supported (only conv_tasnet_skip; "
                "speaker-conditioned separators need the enrollment as an extra input)"
            )
        self.causal, self.input_dim = separator.causal, separator.input_dim
        self.num_spk, self.nonlinear = separator.num_spk, separator.nonlinear
        self.exponent = float(separator.magnitude_exponent)
        self.input_norm = FoldedNorm(separator.input_norm, 0)
        bottleneck = separator.bottleneck
        self.bottleneck = NormLinear(self.input_norm, bottleneck.weight[..., 0], bottleneck.bias)
        last = len(separator.blocks) - 1
        self.blocks = torch.nn.ModuleList(
            _FusedBlock(block, 1 + 2 * i, 2 + 2 * i, i == last) for i, block in enumerate(separator.blocks)
        )
        self.mask_act = _PReLU(separator.mask_act)
        rows = self.input_dim if self.nonlinear != "softmax" else self.num_spk * self.input_dim
        self.mask = torch.nn.Linear(separator.skip_dim, rows)
        weight = separator.mask_conv.weight.detach()[:rows, :, 0]
        self.mask.load_state_dict({"weight": weight, "bias": separator.mask_conv.bias.detach()[:rows]})
        self.requires_grad_(False)
        norms = [self.input_norm] + [n for b in self.blocks for n in (b.in_norm, b.depth_norm)]
        self.cumulative = [n.index for n in norms if n.cumulative]
        self.history_sizes = [b.span for b in self.blocks]
        self.hidden_dim = separator.hidden_dim

    def features(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Encoder magnitude (B, T, N) -> separator input, |X| ** magnitude_exponent."""
        if self.exponent == 1.0:
            return magnitude
        return magnitude.clamp_min(1e-8) ** self.exponent

    def state_shapes(self, batch: int) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
        """Name -> (shape, dtype) of every stream state tensor (causal models)."""
        shapes = {HISTORY: ((batch, sum(self.history_sizes), self.hidden_dim), torch.float32)}
        if self.cumulative:
            shapes[NORM_SUMS] = ((batch, len(self.cumulative), 2), torch.float64)
            shapes[FRAMES_SEEN] = ((1,), torch.float64)
        return shapes

    def initial_state(self, batch: int = 1) -> Dict[str, torch.Tensor]:
        """Stream state before the first frame: zero history (the causal padding), no frames."""
        return {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in self.state_shapes(batch).items()}

    def forward(
        self, magnitude: torch.Tensor, state: Optional[Dict[str, torch.Tensor]] = None
    ) -> Tuple[torch.Tensor, Optional[Dict[str, torch.Tensor]]]:
        """Mask of the first speaker for the encoder magnitude (B, T, N).

        Args:
            magnitude: |encoder output| (B, T, N) (before the magnitude exponent).
            state: None for a whole signal; for a causal stream, the state returned by the
                previous call or :meth:`initial_state` (HISTORY (B, sum of spans, H),
                NORM_SUMS (B, cumulative norms, 2) and FRAMES_SEEN (1,) with cLN).

        Returns:
            mask (B, T, N) and the new state (None for a whole signal).
        """
        if state is not None and not self.causal:
            raise ValueError("FusedTCN: only a causal model can run on a stream")
        x = self.features(magnitude)
        seen = state[FRAMES_SEEN] if state is not None and self.cumulative else None
        sums: Dict[int, Optional[torch.Tensor]] = {}
        if seen is not None:
            sums = {index: state[NORM_SUMS][:, j] for j, index in enumerate(self.cumulative)}
        stats, sums[0] = self.input_norm.stats(x, sums.get(0), seen)
        stream = self.bottleneck(x, stats)
        histories: List[Optional[torch.Tensor]] = [None] * len(self.blocks)
        if state is not None:
            offsets = [0]
            for size in self.history_sizes:
                offsets.append(offsets[-1] + size)
            histories = [state[HISTORY][:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        skip_sum, new_histories, inplace = None, [], eager()
        for block, history in zip(self.blocks, histories):
            residual, skip, new_history = block(stream, history, sums, seen)
            new_histories.append(new_history)
            if skip_sum is None:
                skip_sum = skip.contiguous()
            else:
                skip_sum = skip_sum.add_(skip) if inplace else skip_sum + skip
            if residual is not None:
                stream = stream.add_(residual) if inplace else stream + residual
        scores = self.mask(self.mask_act(skip_sum))
        if self.nonlinear == "sigmoid":
            mask = scores.sigmoid_() if inplace else torch.sigmoid(scores)
        elif self.nonlinear == "relu":
            mask = torch.relu(scores)
        else:  # softmax over the speakers; the first speaker's share
            batch, frames = scores.shape[:2]
            mask = torch.softmax(scores.reshape(batch, frames, self.num_spk, -1), dim=2)[:, :, 0]
        if state is None:
            return mask, None
        new_state = {HISTORY: torch.cat(new_histories, dim=1)}
        if self.cumulative:
            new_state[NORM_SUMS] = torch.stack([sums[i] for i in self.cumulative], dim=1)
            new_state[FRAMES_SEEN] = seen + x.shape[1]
        return mask, new_state
