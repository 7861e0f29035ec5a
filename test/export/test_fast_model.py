"""FastEnhancer equals the ESPnet model; the chunked enhancer's backends agree."""

import numpy as np
import pytest
import torch

from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError
from espnet2_pse.inference.backends import make_backend
from test.export.conftest import SMALL_TCN, enh_model, espnet_output, make_signal


@pytest.mark.parametrize("kind,conf,separator", [
    ("conv", SMALL_TCN, "conv_tasnet_skip"),
    ("conv", {**SMALL_TCN, "causal": True}, "conv_tasnet_skip"),
    ("stft", {**SMALL_TCN, "magnitude_exponent": 0.3}, "conv_tasnet_skip"),
    ("stft", {"hidden_size": 16, "num_layers": 1}, "gru_mask"),
])
@pytest.mark.parametrize("use_fft", [True, False])
def test_fast_enhancer_equals_forward_enhance(kind, conf, separator, use_fft):
    model = enh_model(kind, conf, separator)
    x = make_signal(1.5)
    fast = FastEnhancer.from_espnet(model)
    fast.use_fft(use_fft)
    with torch.inference_mode():
        out = fast(torch.from_numpy(x)[None])[0].numpy()
    expected = espnet_output(model, x)
    assert out.shape == expected.shape and np.std(expected) > 1e-3
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_normalize_variance_scales_like_separate_speech():
    model = enh_model("conv", SMALL_TCN)
    model.normalize_variance = True
    x = make_signal(1.0) * 7.0
    with torch.inference_mode():
        out = FastEnhancer.from_espnet(model)(torch.from_numpy(x)[None])[0].numpy()
    scale = np.std(x, ddof=1)
    np.testing.assert_allclose(out, espnet_output(model, x / scale) * scale, atol=1e-4)


def test_unsupported_models_are_named():
    model = enh_model("conv", SMALL_TCN)
    from espnet2.enh.separator.tcn_separator import TCNSeparator

    model.separator = TCNSeparator(64, layer=2, stack=1, bottleneck_dim=8, hidden_dim=8)
    with pytest.raises(UnsupportedModelError, match="separator TCNSeparator"):
        FastEnhancer.from_espnet(model)
    # The chunked enhancer falls back to ESPnet's path on "auto" and refuses "torch".
    assert make_backend(model, "auto") is None
    with pytest.raises(ValueError, match="backend 'torch' cannot run this model: separator TCNSeparator"):
        make_backend(model, "torch")
    with pytest.raises(ValueError, match="speaker-conditioned"):
        make_backend(enh_model("conv", SMALL_TCN), "onnx", conditioned=True)
    # A complex mask runs through ESPnet's path, with the reason named.
    complex_mask = enh_model("stft", {**SMALL_TCN, "magnitude_exponent": 0.3, "mask_type": "complex"})
    with pytest.raises(UnsupportedModelError, match="mask_type 'complex'"):
        FastEnhancer.from_espnet(complex_mask)
    assert make_backend(complex_mask, "auto") is None
    assert np.std(espnet_output(complex_mask, make_signal(0.5))) > 1e-3


def test_backends_agree():
    model = enh_model("stft", {**SMALL_TCN, "magnitude_exponent": 0.3})
    speech = torch.from_numpy(make_signal(2.0))[None]
    expected = espnet_output(model, speech[0].numpy())
    for name in ("auto", "torch", "onnx"):
        backend = make_backend(model, name)
        np.testing.assert_allclose(backend(speech)[0].numpy(), expected, atol=1e-5, err_msg=name)
