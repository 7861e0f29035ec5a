"""Mask nonlinearities, input features and the deep filter shared by the mask-estimating separators of this package."""

from typing import List

import torch
from espnet2.enh.layers.complex_utils import is_complex

MASK_NONLINEARS = ("sigmoid", "relu", "softmax")
MASK_TYPES = ("real", "complex")


def check_mask_nonlinear(owner: str, nonlinear: str, num_spk: int) -> None:
    """Raise ValueError naming ``owner`` if ``nonlinear`` cannot be used with ``num_spk`` masks."""
    if nonlinear not in MASK_NONLINEARS:
        raise ValueError(f"{owner}: nonlinear '{nonlinear}' is not one of {MASK_NONLINEARS}")
    if nonlinear == "softmax" and num_spk < 2:
        raise ValueError(
            f"{owner}: nonlinear 'softmax' normalises over speakers and needs num_spk >= 2, "
            f"got num_spk={num_spk}"
        )


def apply_mask_nonlinear(scores: torch.Tensor, nonlinear: str, spk_dim: int) -> torch.Tensor:
    """Turn raw scores into masks; "softmax" normalises over the speaker axis ``spk_dim``."""
    if nonlinear == "sigmoid":
        return torch.sigmoid(scores)
    if nonlinear == "relu":
        return torch.relu(scores)
    if nonlinear == "softmax":
        return torch.softmax(scores, dim=spk_dim)
    raise ValueError(f"nonlinear '{nonlinear}' is not one of {MASK_NONLINEARS}")


def real_features(owner: str, input, input_dim: int, exponent: float = 1.0) -> torch.Tensor:
    """Real (B, T, N) separator input: the magnitude of a complex encoder output.

    ``exponent`` < 1 compresses the magnitude (|X|^0.3 is a common choice for STFT input): it
    shrinks the dynamic range the network has to cover, without a log's blow-up near zero.
    Raises ValueError naming ``owner`` when the shape does not match ``input_dim`` (the
    encoder's channels or frequency bins).
    """
    feature = abs(input) if is_complex(input) else input
    if feature.dim() != 3 or feature.shape[-1] != input_dim:
        raise ValueError(
            f"{owner}: expected input (B, T, {input_dim}), got {tuple(feature.shape)}; "
            "input_dim must match the encoder's output size"
        )
    if exponent != 1.0:
        # The floor keeps the gradient of x**e (e < 1) finite at zero.
        feature = feature.clamp_min(1e-8) ** exponent
    return feature


def check_exponent(owner: str, exponent: float) -> None:
    if not 0.0 < exponent <= 1.0:
        raise ValueError(f"{owner}: magnitude_exponent must be in (0, 1], got {exponent!r}")


def check_mask_type(owner: str, mask_type: str, nonlinear: str) -> None:
    """Raise ValueError naming ``owner`` for an unknown mask type or a nonlinearity it cannot use."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"{owner}: mask_type '{mask_type}' is not one of {MASK_TYPES}")
    if mask_type == "complex" and nonlinear != "sigmoid":
        raise ValueError(
            f"{owner}: a complex mask is bounded by its own tanh of the modulus; "
            f"nonlinear must stay 'sigmoid' (the default), got '{nonlinear}'"
        )


def complex_features(owner: str, input, input_dim: int, exponent: float) -> torch.Tensor:
    """(B, T, 3N) features of a complex input: |X|^e and its real and imaginary parts.

    The compressed complex spectrum |X|^e * X/|X| carries the phase that a magnitude-only
    network cannot see; a network predicting a complex mask needs it.
    """
    if not is_complex(input):
        raise ValueError(f"{owner}: mask_type 'complex' needs a complex encoder output (encoder: stft)")
    magnitude = abs(input)
    compressed = real_features(owner, magnitude, input_dim, exponent)  # checks the shape too
    scale = compressed / magnitude.clamp_min(1e-8)
    return torch.cat([compressed, input.real * scale, input.imag * scale], dim=-1)


def bounded_complex_mask(real: torch.Tensor, imag: torch.Tensor):
    """Raw (real, imag) scores -> mask real and imaginary parts, modulus tanh(|score|) < 1.

    The polar bound keeps the mask's phase free while its gain stays below one like a
    sigmoid mask's (the bounded "E" mask of DCCRN).
    """
    modulus = torch.sqrt(real**2 + imag**2 + 1e-12)
    gain = torch.tanh(modulus) / modulus
    return real * gain, imag * gain


def deep_filter_offsets(order: int, lookahead: int) -> List[int]:
    """Frame offsets of a deep filter's taps: ``order - 1 - lookahead`` past frames, the
    current one and ``lookahead`` future ones."""
    return list(range(lookahead - order + 1, lookahead + 1))


def check_deep_filter(owner: str, order: int, bins: int, lookahead: int, input_dim: int,
                      mask_type: str, causal: bool) -> None:
    """Raise ValueError naming ``owner`` for deep-filter settings that cannot be used."""
    if order == 0:
        return
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"{owner}: deep_filter_order must be 0 (off) or a positive integer, got {order!r}")
    if mask_type != "real":
        raise ValueError(f"{owner}: deep filtering adds to a real mask; mask_type must be 'real', got '{mask_type}'")
    if not isinstance(bins, int) or not 1 <= bins <= input_dim:
        raise ValueError(f"{owner}: deep_filter_bins must be an integer in [1, {input_dim}], got {bins!r}")
    if not isinstance(lookahead, int) or not 0 <= lookahead < order:
        raise ValueError(
            f"{owner}: deep_filter_lookahead must be an integer in [0, {order - 1}], got {lookahead!r}"
        )
    if causal and lookahead:
        raise ValueError(f"{owner}: a causal model cannot look ahead; deep_filter_lookahead must be 0")


def shift_frames(x: torch.Tensor, offset: int) -> torch.Tensor:
    """(B, T, F) -> the same frames moved by ``offset`` (frame t holds x[t + offset], zeros outside)."""
    if offset == 0:
        return x
    frames = x.shape[1]
    if offset < 0:
        return torch.nn.functional.pad(x, (0, 0, -offset, 0))[:, :frames]
    return torch.nn.functional.pad(x, (0, 0, 0, offset))[:, offset:]


def deep_filter(real: torch.Tensor, imag: torch.Tensor, coefs: torch.Tensor, offsets: List[int]):
    """Per-bin complex FIR filter over frames: sum_k C_k(t, f) X(t + offsets[k], f).

    Args:
        real, imag: the input's parts (B, T, F).
        coefs: (B, K, 2, T, F), each tap's real and imaginary coefficient.
        offsets: K frame offsets (see :func:`deep_filter_offsets`).

    Returns:
        the filtered real and imaginary parts, (B, T, F) each.
    """
    out_real = out_imag = 0.0
    for k, offset in enumerate(offsets):
        x_real, x_imag = shift_frames(real, offset), shift_frames(imag, offset)
        c_real, c_imag = coefs[:, k, 0], coefs[:, k, 1]
        out_real = out_real + c_real * x_real - c_imag * x_imag
        out_imag = out_imag + c_real * x_imag + c_imag * x_real
    return out_real, out_imag
