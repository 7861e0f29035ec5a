"""Conv-TasNet mask network with the skip path, in the sizes of Sivaraman & Kim (JSTSP 2022)."""

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from espnet2.enh.separator.abs_separator import AbsSeparator
from torch_complex.tensor import ComplexTensor

from espnet2_pse.separators.masks import (
    apply_mask_nonlinear,
    bounded_complex_mask,
    check_deep_filter,
    check_exponent,
    check_mask_nonlinear,
    check_mask_type,
    complex_features,
    deep_filter,
    deep_filter_offsets,
    real_features,
)
from espnet2_pse.separators.presets import resolve_sizes
from espnet2_pse.separators.tcn_layers import (
    CAUSAL_NORM_TYPES,
    NORM_TYPES,
    TCNBlock,
    make_norm,
    norm_streaming,
)

_PAPER = dict(layer=7, stack=2, skip_dim=128, kernel=3)

# Paper sizes (H hidden / B bottleneck = 32/8 ... 256/64). With ESPnet's bias-free conv
# encoder and decoder (N=512, kernel 16) and num_spk=1 the whole model has
# 158,037 / 245,133 / 462,333 / 1,068,765 parameters.
# "cpu" is a small model for the default CPU recipe, meant for fewer encoder channels.
PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(_PAPER, bottleneck_dim=8, hidden_dim=32),
    "small": dict(_PAPER, bottleneck_dim=16, hidden_dim=64),
    "medium": dict(_PAPER, bottleneck_dim=32, hidden_dim=128),
    "large": dict(_PAPER, bottleneck_dim=64, hidden_dim=256),
    "cpu": dict(layer=7, stack=1, skip_dim=64, kernel=3, bottleneck_dim=32, hidden_dim=64),
}
# Sizes used when neither the preset nor the caller sets them: the paper's "medium".
DEFAULT_SIZES: Dict[str, int] = dict(PRESETS["medium"])


class ConvTasNetSkip(AbsSeparator):
    """Conv-TasNet TCN mask estimator with residual and skip paths (asteroid's TDConvNet layout).

    Use it with ESPnet's ``encoder: conv`` / ``decoder: conv`` (the paper: channel N=512,
    kernel_size 16, stride 8). ESPnet's own ``tcn`` separator has no skip path and no biases,
    so the same B/H gives other sizes; this class reproduces the paper's parameter counts.

    Network, on the encoder output (B, T, N) seen as (B, N, T):
        norm(N) (gLN by default) -> 1x1 conv N->B
        -> X*R blocks, block i with dilation 2**(i mod X):
           [1x1 B->H, PReLU, norm, depthwise H kernel P, PReLU, norm] -> residual 1x1 H->B
           (added to the block input) and skip 1x1 H->Sc (summed over all blocks)
        -> PReLU -> 1x1 Sc->num_spk*N -> mask nonlinearity.
    The masks multiply the encoder output, which may be real or complex.

    Sizes come from ``preset`` ("tiny", "small", "medium", "large": the paper's; "cpu": X=7,
    R=1, B=32, H=64, Sc=64) or from explicit arguments; an explicit argument that contradicts
    the preset raises ValueError. Unset sizes default to the paper's medium model.
    On CPU, shrink the encoder too, in the encoder/decoder configs, e.g.
    ``encoder_conf: {channel: 128, kernel_size: 16, stride: 8}``; ``input_dim`` follows it.

    Causal mode (``causal: true``) pads the depthwise convolutions on the left only and needs
    a causal norm: "cLN" (cumulative layer norm, the default then) or "chLN" (per-frame);
    :meth:`forward_streaming` then processes a stream chunk by chunk with the same output.
    Padded frames of shorter batch items are processed like signal, as in ESPnet's TCN.
    The last block's residual conv is unused (as in asteroid) and frozen; it only keeps the
    parameter count and state-dict layout of the paper's models.

    Conditioning hook: every block input passes through :meth:`condition_block_input`
    (identity here). A speaker-conditioned subclass overrides it to apply FiLM on the
    (B, bottleneck_dim, T) input, or calls ``block.widen_input(E)`` on ``self.blocks`` in its
    constructor and concatenates an E-dim embedding in the hook.

    Args:
        input_dim: N, channels of the encoder output.
        num_spk: number of masks.
        preset: name of a size preset (see ``PRESETS``) or None.
        layer: X, blocks per repeat (dilations 1, 2, ..., 2**(X-1)).
        stack: R, repeats.
        bottleneck_dim: B.
        hidden_dim: H.
        skip_dim: Sc.
        kernel: P, depthwise kernel size.
        causal: causal convolutions and normalisation, for streaming.
        norm_type: "gLN", "cLN", "chLN" or "BN"; default "gLN", or "cLN" when causal.
        nonlinear: mask nonlinearity, "sigmoid", "relu" or "softmax" (over speakers).
        magnitude_exponent: features are |X|**exponent (1: the magnitude; 0.3 compresses an
            STFT's range); the masks still multiply the encoder output itself.
        mask_type: "real" (a mask on the magnitude features, the default) or "complex" (STFT
            encoders only: the network also sees the compressed complex spectrum and predicts
            a complex mask whose modulus is tanh-bounded below one, so it can correct phase).
        deep_filter_order: 0 (off) or K > 0: STFT encoders only, a deep filter added to the
            real mask's output in the lowest ``deep_filter_bins`` bins, as DeepFilterNet
            does where speech harmonics live: each bin also gets sum_k C_k X(t + o_k) over K
            frames (``deep_filter_lookahead`` of them ahead), with complex coefficients
            (tanh-bounded parts) from the skip path. The network then also reads the real
            and imaginary parts of the compressed spectrum through its own 1x1 conv. Both new
            convs start at zero, so a model initialised from a plain one (``--init_param``)
            starts as that model. ESPnet's path only (no fast path, ONNX or streaming).
        deep_filter_bins: bins 0 .. F_df - 1 that are filtered (default: all).
        deep_filter_lookahead: future frames among the K taps (0 when causal).
    """

    def __init__(
        self,
        input_dim: int,
        num_spk: int = 1,
        preset: Optional[str] = None,
        layer: Optional[int] = None,
        stack: Optional[int] = None,
        bottleneck_dim: Optional[int] = None,
        hidden_dim: Optional[int] = None,
        skip_dim: Optional[int] = None,
        kernel: Optional[int] = None,
        causal: bool = False,
        norm_type: Optional[str] = None,
        nonlinear: str = "sigmoid",
        magnitude_exponent: float = 1.0,
        mask_type: str = "real",
        deep_filter_order: int = 0,
        deep_filter_bins: Optional[int] = None,
        deep_filter_lookahead: int = 0,
    ):
        super().__init__()
        name = type(self).__name__
        check_exponent(name, magnitude_exponent)
        check_mask_type(name, mask_type, nonlinear)
        self.mask_type = mask_type
        self.magnitude_exponent = magnitude_exponent
        sizes = resolve_sizes(
            name,
            PRESETS,
            preset,
            dict(
                layer=layer,
                stack=stack,
                bottleneck_dim=bottleneck_dim,
                hidden_dim=hidden_dim,
                skip_dim=skip_dim,
                kernel=kernel,
            ),
            DEFAULT_SIZES,
        )
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
        if norm_type is None:
            norm_type = "cLN" if causal else "gLN"
        if norm_type not in NORM_TYPES:
            raise ValueError(f"{name}: norm_type '{norm_type}' is not one of {NORM_TYPES}")
        if causal and norm_type not in CAUSAL_NORM_TYPES:
            raise ValueError(
                f"{name}: causal=True needs a causal norm_type {CAUSAL_NORM_TYPES}, "
                f"but got '{norm_type}', which looks at future frames"
            )
        check_mask_nonlinear(name, nonlinear, num_spk)
        if deep_filter_bins is None:
            deep_filter_bins = input_dim
        check_deep_filter(name, deep_filter_order, deep_filter_bins, deep_filter_lookahead,
                          input_dim, mask_type, causal)

        self._num_spk = num_spk
        self.input_dim = input_dim
        self.preset = preset
        self.causal = causal
        self.norm_type = norm_type
        self.nonlinear = nonlinear
        self.layer, self.stack = sizes["layer"], sizes["stack"]
        self.bottleneck_dim, self.hidden_dim = sizes["bottleneck_dim"], sizes["hidden_dim"]
        self.skip_dim, self.kernel = sizes["skip_dim"], sizes["kernel"]

        # A complex mask network reads |X|^e and the real and imaginary parts of the
        # compressed spectrum, and writes a real and an imaginary score per bin.
        parts = 3 if mask_type == "complex" else 1
        self.mask_parts = 2 if mask_type == "complex" else 1
        # The input norm uses the blocks' norm type, as in asteroid (gLN would leak the future).
        self.input_norm = make_norm(norm_type, parts * input_dim)
        self.bottleneck = torch.nn.Conv1d(parts * input_dim, self.bottleneck_dim, 1)
        self.blocks = torch.nn.ModuleList(
            TCNBlock(
                in_channels=self.bottleneck_dim,
                hidden_channels=self.hidden_dim,
                res_channels=self.bottleneck_dim,
                skip_channels=self.skip_dim,
                kernel_size=self.kernel,
                dilation=2**x,
                norm_type=norm_type,
                causal=causal,
            )
            for _ in range(self.stack)
            for x in range(self.layer)
        )
        # The last block's residual output feeds nothing. asteroid keeps that conv and the
        # paper's counts include it; we keep it too but freeze it, so DDP without
        # find_unused_parameters does not wait for its gradient.
        self.blocks[-1].res_conv.requires_grad_(False)
        self.mask_act = torch.nn.PReLU()
        self.mask_conv = torch.nn.Conv1d(self.skip_dim, num_spk * self.mask_parts * input_dim, 1)
        self.deep_filter_order, self.deep_filter_bins = deep_filter_order, deep_filter_bins
        self.deep_filter_offsets = deep_filter_offsets(deep_filter_order, deep_filter_lookahead)
        if deep_filter_order:
            self.df_input_norm = make_norm(norm_type, 2 * input_dim)
            self.df_input = torch.nn.Conv1d(2 * input_dim, self.bottleneck_dim, 1)
            self.df_conv = torch.nn.Conv1d(self.skip_dim, num_spk * deep_filter_order * 2 * deep_filter_bins, 1)
            for layer in (self.df_input, self.df_conv):  # zero: the plain mask network at the start
                torch.nn.init.zeros_(layer.weight)
                torch.nn.init.zeros_(layer.bias)

    @property
    def num_spk(self) -> int:
        return self._num_spk

    @property
    def receptive_field(self) -> int:
        """Number of encoder frames that one output frame depends on (through the blocks)."""
        return 1 + sum(block.span for block in self.blocks)

    def condition_block_input(
        self, x: torch.Tensor, index: int, additional: Optional[Dict]
    ) -> torch.Tensor:
        """Hook applied to the input of block ``index`` (0-based, repeat-major).

        Args:
            x: residual stream (B, bottleneck_dim, T).
            index: block index in ``self.blocks``.
            additional: the ``additional`` dict given to :meth:`forward` (may be None).

        Returns:
            the tensor fed to ``self.blocks[index]``; identity here.
        """
        return x

    def forward(
        self,
        input: Union[torch.Tensor, ComplexTensor],
        ilens: torch.Tensor,
        additional: Optional[Dict] = None,
    ) -> Tuple[List[Union[torch.Tensor, ComplexTensor]], torch.Tensor, OrderedDict]:
        """Estimate masks and apply them to the encoder output.

        Args:
            input: encoder output (B, T, N), real or complex.
            ilens: number of valid frames per item (B,); returned unchanged.
            additional: extra model data; passed to :meth:`condition_block_input`.

        Returns:
            masked: list of num_spk tensors (B, T, N), input * mask.
            ilens: (B,).
            others: OrderedDict with "mask_spk1", ... of shape (B, T, N).
        """
        feature = self._features(input).transpose(1, 2)  # (B, N, T), or (B, 3N, T) (see _features)
        if self.deep_filter_order:
            magnitude, parts = feature.split([self.input_dim, 2 * self.input_dim], dim=1)
            stream = self.bottleneck(self.input_norm(magnitude)) + self.df_input(self.df_input_norm(parts))
        else:
            stream = self.bottleneck(self.input_norm(feature))  # (B, bottleneck_dim, T)
        skip_sum = 0.0
        for index, block in enumerate(self.blocks):
            residual, skip = block(self.condition_block_input(stream, index, additional))
            stream = stream + residual
            skip_sum = skip_sum + skip
        masked, others = self._apply_masks(input, skip_sum)
        return masked, ilens, others

    def forward_streaming(
        self,
        input_frame: Union[torch.Tensor, ComplexTensor],
        buffer: Optional[Dict] = None,
        additional: Optional[Dict] = None,
    ) -> Tuple[List[Union[torch.Tensor, ComplexTensor]], Dict, OrderedDict]:
        """Causal model only: process the next frames (B, K, N), K >= 1, of a stream.

        Feeding a signal chunk by chunk gives the same masks as :meth:`forward` on the whole
        signal: ``buffer`` carries the cumulative-norm statistics and each block's last
        (P - 1) * dilation depthwise inputs.

        Args:
            input_frame: encoder frames (B, K, N), real or complex.
            buffer: the buffer returned by the previous call, or None at the start.
            additional: passed to :meth:`condition_block_input`.

        Returns:
            masked: list of num_spk tensors (B, K, N); buffer: the new buffer;
            others: masks as in :meth:`forward`.
        """
        if not self.causal:
            raise ValueError(
                f"{type(self).__name__}: streaming needs causal=True; "
                "the non-causal model looks at future frames"
            )
        if self.deep_filter_order:
            raise ValueError(f"{type(self).__name__}: streaming with deep filtering is not supported")
        buffer = buffer or {"input_norm": None, "blocks": [None] * len(self.blocks)}
        feature = self._features(input_frame).transpose(1, 2)  # (B, N, K)
        normed, norm_state = norm_streaming(self.input_norm, feature, buffer["input_norm"])
        stream = self.bottleneck(normed)
        skip_sum, block_states = 0.0, []
        for index, block in enumerate(self.blocks):
            x = self.condition_block_input(stream, index, additional)
            residual, skip, state = block.forward_streaming(x, buffer["blocks"][index])
            stream = stream + residual
            skip_sum = skip_sum + skip
            block_states.append(state)
        masked, others = self._apply_masks(input_frame, skip_sum)
        return masked, {"input_norm": norm_state, "blocks": block_states}, others

    def _features(self, input: Union[torch.Tensor, ComplexTensor]) -> torch.Tensor:
        """Real features: (B, T, N) magnitudes, or (B, T, 3N) for a complex mask or a deep filter."""
        if self.mask_type == "complex" or self.deep_filter_order:
            return complex_features(type(self).__name__, input, self.input_dim, self.magnitude_exponent)
        return real_features(type(self).__name__, input, self.input_dim, self.magnitude_exponent)

    def _apply_masks(self, input, skip_sum: torch.Tensor) -> Tuple[List, OrderedDict]:
        """Skip-path sum (B, Sc, T) -> masked inputs and {"mask_spk1": (B, T, N), ...}."""
        batch, _, frames = skip_sum.shape
        scores = self.mask_conv(self.mask_act(skip_sum))  # (B, num_spk * N, T)
        if self.mask_type == "complex":
            scores = scores.view(batch, self.num_spk, 2, self.input_dim, frames).transpose(3, 4)
            real, imag = bounded_complex_mask(scores[:, :, 0], scores[:, :, 1])
            masks = _complex_like(input, real, imag).unbind(dim=1)  # num_spk x (B, T, N), complex
        else:
            scores = scores.view(batch, self.num_spk, self.input_dim, frames)
            masks = apply_mask_nonlinear(scores, self.nonlinear, spk_dim=1)
            masks = masks.transpose(2, 3).unbind(dim=1)  # num_spk x (B, T, N)
        masked = [input * m for m in masks]
        if self.deep_filter_order:
            masked = [m + term for m, term in zip(masked, self._deep_filter_terms(input, skip_sum))]
        others = OrderedDict((f"mask_spk{i + 1}", m) for i, m in enumerate(masks))
        return masked, others

    def _deep_filter_terms(self, input, skip_sum: torch.Tensor) -> List:
        """num_spk complex (B, T, N) deep-filter outputs, zero above the filtered bins."""
        batch, _, frames = skip_sum.shape
        order, bins = self.deep_filter_order, self.deep_filter_bins
        coefs = torch.tanh(self.df_conv(self.mask_act(skip_sum)))
        coefs = coefs.view(batch, self.num_spk, order, 2, bins, frames).transpose(4, 5)
        real, imag = input.real[..., :bins], input.imag[..., :bins]
        pad = (0, self.input_dim - bins)
        terms = []
        for spk in range(self.num_spk):
            out_real, out_imag = deep_filter(real, imag, coefs[:, spk], self.deep_filter_offsets)
            terms.append(_complex_like(input, torch.nn.functional.pad(out_real, pad),
                                       torch.nn.functional.pad(out_imag, pad)))
        return terms


def _complex_like(input, real: torch.Tensor, imag: torch.Tensor):
    """A complex tensor of the input's kind (ComplexTensor or torch complex) from its parts."""
    if isinstance(input, ComplexTensor):
        return ComplexTensor(real, imag)
    return torch.complex(real, imag)
