"""ConvTasNetSkip's deep filter: the taps, a zero start equal to the plain model, what it can
learn that a real mask cannot, and the settings and paths it refuses."""

import pytest
import torch
from torch_complex.tensor import ComplexTensor

from espnet2_pse.export.fast_model import UnsupportedModelError, build_mask_net
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from espnet2_pse.separators.masks import deep_filter, deep_filter_offsets
from test.separators.conftest import fit_relative_error

CONF = dict(layer=3, stack=1, bottleneck_dim=8, hidden_dim=16, skip_dim=8, magnitude_exponent=0.3)


def test_taps_filter_past_current_and_future_frames():
    assert deep_filter_offsets(5, 0) == [-4, -3, -2, -1, 0]
    assert deep_filter_offsets(3, 1) == [-1, 0, 1]
    torch.manual_seed(0)
    real, imag = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    coefs = torch.zeros(2, 3, 2, 6, 4)
    coefs[:, 0, 0] = 1.0  # tap at offset -1, coefficient 1: the previous frame
    coefs[:, 2, 1] = 2.0  # tap at offset +1, coefficient 2j: the next frame turned and doubled
    out_real, out_imag = deep_filter(real, imag, coefs, [-1, 0, 1])
    previous_real = torch.cat([torch.zeros(2, 1, 4), real[:, :-1]], dim=1)
    previous_imag = torch.cat([torch.zeros(2, 1, 4), imag[:, :-1]], dim=1)
    next_real = torch.cat([real[:, 1:], torch.zeros(2, 1, 4)], dim=1)
    next_imag = torch.cat([imag[:, 1:], torch.zeros(2, 1, 4)], dim=1)
    assert torch.allclose(out_real, previous_real - 2 * next_imag)
    assert torch.allclose(out_imag, previous_imag + 2 * next_real)


def test_starts_as_the_plain_model_it_is_initialised_from():
    torch.manual_seed(0)
    plain = ConvTasNetSkip(20, **CONF).eval()
    filtered = ConvTasNetSkip(20, deep_filter_order=3, deep_filter_bins=12, deep_filter_lookahead=1, **CONF).eval()
    missing, unexpected = filtered.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == []
    assert sorted(missing) == sorted(f"{layer}.{kind}" for layer in ("df_input_norm", "df_input", "df_conv")
                                     for kind in ("gamma", "beta", "weight", "bias")
                                     if (layer == "df_input_norm") == (kind in ("gamma", "beta")))
    x = torch.randn(2, 30, 20, dtype=torch.complex64)
    assert torch.allclose(filtered(x, None)[0][0], plain(x, None)[0][0], atol=1e-6)
    as_complex_tensor = filtered(ComplexTensor(x.real, x.imag), None)[0][0]
    assert isinstance(as_complex_tensor, ComplexTensor)


def test_learns_a_delayed_turned_copy_that_a_real_mask_cannot():
    """Target: half the previous frame, a quarter turn of phase, in the filtered bins; a real
    mask on the current frame can at best output zero there."""
    torch.manual_seed(0)
    x = torch.randn(2, 30, 20, dtype=torch.complex64)
    target = torch.zeros_like(x)
    target[:, 1:, :12] = 0.5j * x[:, :-1, :12]
    errors = {}
    for order in (0, 2):
        sep = ConvTasNetSkip(20, deep_filter_order=order, deep_filter_bins=12, **CONF)
        errors[order] = fit_relative_error(sep, x, target)
    assert errors[0] > 0.95 and errors[2] < 0.2, errors


def test_refused_settings_and_paths():
    with pytest.raises(ValueError, match="deep_filter_order must be 0"):
        ConvTasNetSkip(20, deep_filter_order=-1, **CONF)
    with pytest.raises(ValueError, match="mask_type must be 'real'"):
        ConvTasNetSkip(20, deep_filter_order=2, mask_type="complex", **CONF)
    with pytest.raises(ValueError, match=r"deep_filter_bins must be an integer in \[1, 20\]"):
        ConvTasNetSkip(20, deep_filter_order=2, deep_filter_bins=21, **CONF)
    with pytest.raises(ValueError, match=r"deep_filter_lookahead must be an integer in \[0, 1\]"):
        ConvTasNetSkip(20, deep_filter_order=2, deep_filter_lookahead=2, **CONF)
    with pytest.raises(ValueError, match="a causal model cannot look ahead"):
        ConvTasNetSkip(20, deep_filter_order=2, deep_filter_lookahead=1, causal=True, **CONF)
    causal = ConvTasNetSkip(20, deep_filter_order=2, causal=True, **CONF)
    x = torch.randn(1, 5, 20, dtype=torch.complex64)
    with pytest.raises(ValueError, match="streaming with deep filtering is not supported"):
        causal.forward_streaming(x)
    with pytest.raises(ValueError, match="needs a complex encoder output"):
        causal(x.abs(), None)
    with pytest.raises(UnsupportedModelError, match="deep filter"):
        build_mask_net(causal)
