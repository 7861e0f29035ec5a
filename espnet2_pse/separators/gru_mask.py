"""GRU magnitude-mask network of the IU-SAIGE/pse code (Sivaraman & Kim)."""

from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
from espnet2.enh.separator.abs_separator import AbsSeparator
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch_complex.tensor import ComplexTensor

from espnet2_pse.separators.masks import (
    apply_mask_nonlinear,
    check_exponent,
    check_mask_nonlinear,
    real_features,
)
from espnet2_pse.separators.presets import resolve_sizes

# The authors' sizes; bidirectional with 513 bins: 157,185 / 363,009 / 922,113 / 2,630,145
# parameters (the STFT encoder and decoder have none).
PRESETS: Dict[str, Dict[str, int]] = {
    "tiny": dict(hidden_size=32, num_layers=2),
    "small": dict(hidden_size=64, num_layers=2),
    "medium": dict(hidden_size=128, num_layers=2),
    "large": dict(hidden_size=256, num_layers=2),
}
DEFAULT_SIZES: Dict[str, int] = dict(PRESETS["medium"])


class GRUMaskNet(AbsSeparator):
    """Stacked GRU on the STFT magnitude predicting a real mask for the complex STFT.

    Use it with ESPnet's ``encoder: stft`` / ``decoder: stft`` (the authors: n_fft 1024,
    hop_length 256, window hann, so input_dim = 513 bins):
        |X| (B, T, F) -> GRU (num_layers, bidirectional) -> Linear -> num_spk*F -> mask
    and each mask multiplies the complex input.

    Sizes come from ``preset`` ("tiny", "small", "medium", "large": hidden 32/64/128/256,
    2 layers) or from explicit arguments; contradictions raise ValueError. Unset sizes
    default to "medium". ``bidirectional: false`` gives a causal model with
    :meth:`forward_streaming`. On CPU, a smaller STFT (e.g. n_fft 512, hop 128) shrinks the
    input layer; ``input_dim`` follows the encoder.

    Args:
        input_dim: F, frequency bins of the encoder output.
        num_spk: number of masks.
        preset: name of a size preset (see ``PRESETS``) or None.
        hidden_size: GRU units per direction.
        num_layers: stacked GRU layers.
        bidirectional: the authors' default True; False for streaming.
        nonlinear: mask nonlinearity, "sigmoid" (authors), "relu" or "softmax" (over speakers).
        magnitude_exponent: features are |X|**exponent (1: the authors' magnitude; 0.3
            compresses the STFT's range); the masks still multiply the complex STFT.
    """

    def __init__(
        self,
        input_dim: int,
        num_spk: int = 1,
        preset: Optional[str] = None,
        hidden_size: Optional[int] = None,
        num_layers: Optional[int] = None,
        bidirectional: bool = True,
        nonlinear: str = "sigmoid",
        magnitude_exponent: float = 1.0,
    ):
        super().__init__()
        name = type(self).__name__
        check_exponent(name, magnitude_exponent)
        self.magnitude_exponent = magnitude_exponent
        sizes = resolve_sizes(
            name,
            PRESETS,
            preset,
            dict(hidden_size=hidden_size, num_layers=num_layers),
            DEFAULT_SIZES,
        )
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
        check_mask_nonlinear(name, nonlinear, num_spk)

        self._num_spk = num_spk
        self.input_dim = input_dim
        self.preset = preset
        self.hidden_size, self.num_layers = sizes["hidden_size"], sizes["num_layers"]
        self.bidirectional = bidirectional
        self.nonlinear = nonlinear
        self.rnn = torch.nn.GRU(
            input_size=input_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        directions = 2 if bidirectional else 1
        self.linear = torch.nn.Linear(directions * self.hidden_size, num_spk * input_dim)

    @property
    def num_spk(self) -> int:
        return self._num_spk

    def _features(self, input: Union[torch.Tensor, ComplexTensor]) -> torch.Tensor:
        """Real features (B, T, N): the magnitude of a complex input."""
        return real_features(type(self).__name__, input, self.input_dim, self.magnitude_exponent)

    def _masks(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """GRU output (B, T, D*H) -> num_spk masks (B, T, F)."""
        batch, frames, _ = hidden.shape
        scores = self.linear(hidden).view(batch, frames, self.num_spk, self.input_dim)
        return apply_mask_nonlinear(scores, self.nonlinear, spk_dim=2).unbind(dim=2)

    @staticmethod
    def _outputs(input, masks) -> Tuple[List, OrderedDict]:
        masked = [input * m for m in masks]
        others = OrderedDict((f"mask_spk{i + 1}", m) for i, m in enumerate(masks))
        return masked, others

    def forward(
        self,
        input: Union[torch.Tensor, ComplexTensor],
        ilens: Optional[torch.Tensor],
        additional: Optional[Dict] = None,
    ) -> Tuple[List[Union[torch.Tensor, ComplexTensor]], torch.Tensor, OrderedDict]:
        """Estimate masks and apply them to the encoder output.

        Args:
            input: STFT (B, T, F), complex (or a real magnitude).
            ilens: number of valid frames per item (B,) or None (all frames valid).
                Padded frames are skipped by the GRU, so a short item in a batch gets the
                same output as alone.
            additional: unused.

        Returns:
            masked: list of num_spk tensors (B, T, F), input * mask.
            ilens: (B,).
            others: OrderedDict with "mask_spk1", ... of shape (B, T, F).
        """
        feature = self._features(input)
        if ilens is None:
            hidden, _ = self.rnn(feature)
        else:
            packed = pack_padded_sequence(
                feature, ilens.cpu().long(), batch_first=True, enforce_sorted=False
            )
            hidden, _ = self.rnn(packed)
            hidden, _ = pad_packed_sequence(
                hidden, batch_first=True, total_length=feature.shape[1]
            )
        masked, others = self._outputs(input, self._masks(hidden))
        return masked, ilens, others

    def forward_streaming(self, input_frame: torch.Tensor, buffer: Optional[torch.Tensor] = None):
        """Process frames of a unidirectional model one chunk at a time.

        Args:
            input_frame: STFT frames (B, 1, F) (any number of frames works).
            buffer: GRU state (num_layers, B, hidden_size) from the previous call, or None.

        Returns:
            masked: list of num_spk tensors (B, 1, F); buffer: the new GRU state;
            others: masks as in :meth:`forward`.
        """
        if self.bidirectional:
            raise ValueError(
                f"{type(self).__name__}: streaming needs bidirectional=False; "
                "a bidirectional GRU reads the whole utterance"
            )
        hidden, buffer = self.rnn(self._features(input_frame), buffer)
        masked, others = self._outputs(input_frame, self._masks(hidden))
        return masked, buffer, others
