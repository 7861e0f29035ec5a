"""Waveform -> enhanced waveform, rebuilt from an ESPnet enhancement model for fast inference."""

from typing import Optional, Union

import torch
from espnet2.enh.decoder.conv_decoder import ConvDecoder
from espnet2.enh.decoder.stft_decoder import STFTDecoder
from espnet2.enh.encoder.conv_encoder import ConvEncoder
from espnet2.enh.encoder.stft_encoder import STFTEncoder

from espnet2_pse.export.conv_frontend import ConvFrontEnd
from espnet2_pse.export.fused_tcn import FusedTCN
from espnet2_pse.export.stft_frontend import STFTFrontEnd
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.separators.gru_mask import GRUMaskNet

FrontEnd = Union[ConvFrontEnd, STFTFrontEnd]


class UnsupportedModelError(ValueError):
    """The model has a part the fast path / export does not rebuild; the message names it."""


class SeparatorMasks(torch.nn.Module):
    """Any mask separator of this package that needs no extra input, called on the magnitude.

    magnitude (B, T, N) -> the separator's ``mask_spk1`` (B, T, N). Used for GRUMaskNet: its
    features come from the magnitude alone, so a real magnitude input gives the same masks
    as the complex STFT. Not streamable here.
    """

    causal = False

    def __init__(self, separator: torch.nn.Module):
        super().__init__()
        self.separator = separator

    def forward(self, magnitude: torch.Tensor, state=None):
        if state is not None:
            raise ValueError(f"{type(self.separator).__name__}: streaming export is not supported")
        return self.separator(magnitude, None)[2]["mask_spk1"], None


def build_frontend(encoder, decoder) -> FrontEnd:
    """ConvFrontEnd or STFTFrontEnd for an ESPnet encoder/decoder pair."""
    if type(encoder) is ConvEncoder and type(decoder) is ConvDecoder:
        return ConvFrontEnd(encoder, decoder)
    if type(encoder) is STFTEncoder and type(decoder) is STFTDecoder:
        return STFTFrontEnd(encoder, decoder)
    raise UnsupportedModelError(
        f"encoder {type(encoder).__name__} / decoder {type(decoder).__name__}: only the conv and "
        "stft encoder/decoder pairs are supported"
    )


def build_mask_net(separator: torch.nn.Module) -> torch.nn.Module:
    """FusedTCN for ConvTasNetSkip, SeparatorMasks for GRUMaskNet."""
    if type(separator) is ConvTasNetSkip:
        if separator.mask_type != "real":
            raise UnsupportedModelError(
                f"separator conv_tasnet_skip with mask_type '{separator.mask_type}': the fast paths "
                "apply real masks only"
            )
        if separator.deep_filter_order:
            raise UnsupportedModelError(
                "separator conv_tasnet_skip with a deep filter (deep_filter_order "
                f"{separator.deep_filter_order}): the fast paths apply real masks only"
            )
        return FusedTCN(separator)
    if type(separator) is GRUMaskNet:
        return SeparatorMasks(separator)
    raise UnsupportedModelError(
        f"separator {type(separator).__name__}: only conv_tasnet_skip and gru_mask are supported "
        "(speaker-conditioned separators need the enrollment as an extra input)"
    )


class FastEnhancer(torch.nn.Module):
    """Single-output enhancement, speech (B, T) -> (B, T), equal to the ESPnet model's first output.

    encoder -> |.| -> mask network -> mask * encoder output -> decoder, all time-major, with
    the mask network of :class:`FusedTCN` (or the separator itself for GRUMaskNet). Built by
    :meth:`from_espnet`; ``normalize_variance`` divides the input by its standard deviation and
    multiplies the output back, as ``SeparateSpeech`` does for models trained that way.

    Args:
        frontend: ConvFrontEnd or STFTFrontEnd.
        mask_net: FusedTCN or SeparatorMasks.
        normalize_variance: scale by the input's std (see above).
    """

    def __init__(self, frontend: FrontEnd, mask_net: torch.nn.Module, normalize_variance: bool = False):
        super().__init__()
        self.frontend, self.mask_net = frontend, mask_net
        self.normalize_variance = normalize_variance
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_espnet(cls, model: torch.nn.Module, normalize_variance: Optional[bool] = None) -> "FastEnhancer":
        """Rebuild an ESPnet enhancement model (ESPnetEnhancementModel / PSEModel).

        ``normalize_variance`` None: the model's own ``normalize_variance`` flag.

        Raises:
            UnsupportedModelError: naming the part (encoder, separator, ...) that is not supported.
        """
        if getattr(model, "mask_module", None) is not None:
            raise UnsupportedModelError("models with a mask_module (enh + diar) are not supported")
        if getattr(model, "normalize_variance_per_ch", False):
            raise UnsupportedModelError("normalize_variance_per_ch is not supported (single-channel only)")
        separator = model.separator
        if separator.num_spk < 1:
            raise UnsupportedModelError(f"separator {type(separator).__name__} has no outputs")
        frontend = build_frontend(model.encoder, model.decoder)
        mask_net = build_mask_net(separator)
        input_dim = getattr(separator, "input_dim", frontend.feature_dim)
        if input_dim != frontend.feature_dim:
            raise UnsupportedModelError(
                f"separator input_dim {input_dim} does not match the encoder's {frontend.feature_dim}"
            )
        if normalize_variance is None:
            normalize_variance = bool(getattr(model, "normalize_variance", False))
        return cls(frontend, mask_net, normalize_variance)

    @property
    def causal(self) -> bool:
        return bool(getattr(self.mask_net, "causal", False))

    @property
    def min_samples(self) -> int:
        """Fewest input samples one pass accepts (a conv kernel, or just over half a window)."""
        return self.frontend.min_samples

    def use_fft(self, enabled: bool) -> bool:
        """STFT models: torch.stft (fast) or DFT matrix products (exportable); no-op otherwise.

        Returns the previous setting (True for models without an STFT).
        """
        previous = getattr(self.frontend, "use_fft", True)
        if isinstance(self.frontend, STFTFrontEnd):
            self.frontend.use_fft = enabled
        return previous

    def forward(self, speech: torch.Tensor) -> torch.Tensor:
        """speech (B, T) float32 at the model rate -> enhanced (B, T)."""
        scale = None
        if self.normalize_variance:
            scale = speech.std(dim=1, keepdim=True).clamp_min(1e-8)
            speech = speech / scale
        coded, magnitude = self.frontend.analyze(speech)
        mask, _ = self.mask_net(magnitude)
        out = self.frontend.synthesize(coded, mask, speech.shape[1])
        return out * scale if scale is not None else out
