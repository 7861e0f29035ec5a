"""ConvTasNetSkip: paper parameter counts, shapes, causality, masks, gradients, ESPnet wiring."""

import pytest
import torch
from torch_complex.tensor import ComplexTensor

from espnet2_pse.separators.conv_tasnet_skip import PRESETS, ConvTasNetSkip
from espnet2_pse.separators.tcn_layers import CumulativeLayerNorm, FusedGlobalLayerNorm
from test.separators.conftest import fit_relative_error

# Totals of the JSTSP paper's models (asteroid 0.7.0, free filterbank, n_src 1).
PAPER_TOTALS = {"tiny": 158_037, "small": 245_133, "medium": 462_333, "large": 1_068_765}
N_FILTERS, KERNEL, STRIDE = 512, 16, 8


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def analytic_total(N, L, B, H, Sc, P, X, R, n_src=1):
    """Parameters of conv encoder + decoder (bias-free) + TDConvNet with skip path."""
    enc_dec = 2 * N * L
    head = 2 * N + (N * B + B)  # gLN(N) + bottleneck 1x1 with bias
    block = (
        (B * H + H)  # 1x1 B->H
        + 1  # PReLU
        + 2 * H  # norm
        + (H * P + H)  # depthwise
        + 1  # PReLU
        + 2 * H  # norm
        + (H * B + B)  # residual 1x1
        + (H * Sc + Sc)  # skip 1x1
    )
    tail = 1 + (Sc * n_src * N + n_src * N)  # PReLU + mask 1x1
    return enc_dec + head + X * R * block + tail


def frontend(N=N_FILTERS):
    conf = {"channel": N, "kernel_size": KERNEL, "stride": STRIDE}
    return {"encoder": "conv", "encoder_conf": conf, "decoder": "conv", "decoder_conf": conf}


@pytest.mark.parametrize("preset", sorted(PAPER_TOTALS))
def test_paper_parameter_counts_formula_and_built_model(preset, build_enh_model):
    p = PRESETS[preset]
    formula = analytic_total(
        N_FILTERS, KERNEL, p["bottleneck_dim"], p["hidden_dim"], p["skip_dim"],
        p["kernel"], p["layer"], p["stack"],
    )
    assert formula == PAPER_TOTALS[preset]

    model = build_enh_model(
        {**frontend(), "separator": "conv_tasnet_skip", "separator_conf": {"preset": preset}}
    )
    assert isinstance(model.separator, ConvTasNetSkip)
    assert n_params(model) == PAPER_TOTALS[preset]
    assert n_params(model.encoder) + n_params(model.decoder) == 2 * N_FILTERS * KERNEL


def test_explicit_sizes_equal_preset():
    explicit = ConvTasNetSkip(N_FILTERS, layer=7, stack=2, bottleneck_dim=8, hidden_dim=32)
    assert n_params(explicit) + 2 * N_FILTERS * KERNEL == PAPER_TOTALS["tiny"]
    # Restating a preset's own value is allowed.
    assert n_params(ConvTasNetSkip(N_FILTERS, preset="tiny", hidden_dim=32)) == n_params(explicit)


def test_cpu_preset_count_with_small_encoder():
    sep = ConvTasNetSkip(128, preset="cpu")
    assert n_params(sep) == analytic_total(128, KERNEL, 32, 64, 64, 3, 7, 1) - 2 * 128 * KERNEL
    assert sep.receptive_field == 1 + 2 * (2**7 - 1)


def test_preset_errors():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'.*'large'.*'tiny'"):
        ConvTasNetSkip(64, preset="huge")
    with pytest.raises(ValueError, match=r"hidden_dim=64 contradicts preset 'tiny' \(hidden_"):
        ConvTasNetSkip(64, preset="tiny", hidden_dim=64)
    with pytest.raises(ValueError, match="causal=True needs a causal norm_type"):
        ConvTasNetSkip(64, preset="cpu", causal=True, norm_type="gLN")
    with pytest.raises(ValueError, match="num_spk >= 2"):
        ConvTasNetSkip(64, preset="cpu", nonlinear="softmax")
    with pytest.raises(ValueError, match="nonlinear 'tanh'"):
        ConvTasNetSkip(64, preset="cpu", nonlinear="tanh")
    with pytest.raises(ValueError, match="layer must be a positive integer"):
        ConvTasNetSkip(64, layer=0)
    with pytest.raises(ValueError, match=r"expected input \(B, T, 64\), got \(1, 5, 32\)"):
        ConvTasNetSkip(64, preset="cpu")(torch.randn(1, 5, 32), torch.tensor([5]))


def small_sep(**kwargs):
    conf = dict(layer=3, stack=2, bottleneck_dim=8, hidden_dim=16, skip_dim=12)
    conf.update(kwargs)
    return ConvTasNetSkip(20, **conf)


@pytest.mark.parametrize("frames", [1, 2, 37])
@pytest.mark.parametrize("causal", [False, True])
def test_output_shapes_odd_lengths(frames, causal):
    torch.manual_seed(0)
    sep = small_sep(causal=causal, num_spk=2)
    x = torch.randn(3, frames, 20)
    ilens = torch.tensor([frames] * 3)
    masked, olens, others = sep(x, ilens)
    assert len(masked) == 2 and olens is ilens
    assert list(others) == ["mask_spk1", "mask_spk2"]
    for m, mask in zip(masked, others.values()):
        assert m.shape == mask.shape == (3, frames, 20)
        assert torch.allclose(m, x * mask)


@pytest.mark.parametrize("norm_type", ["cLN", "chLN"])
def test_causal_output_ignores_future(norm_type):
    torch.manual_seed(0)
    sep = small_sep(causal=True, norm_type=norm_type).eval()
    x = torch.randn(1, 50, 20)
    y = x.clone()
    y[:, 30:] = torch.randn(1, 20, 20) * 5
    mask_x = sep(x, torch.tensor([50]))[2]["mask_spk1"]
    mask_y = sep(y, torch.tensor([50]))[2]["mask_spk1"]
    assert torch.allclose(mask_x[:, :30], mask_y[:, :30], atol=1e-6)
    assert not torch.allclose(mask_x[:, 30:], mask_y[:, 30:], atol=1e-3)


def test_noncausal_output_sees_future():
    torch.manual_seed(0)
    sep = small_sep().eval()
    x = torch.randn(1, 50, 20)
    y = x.clone()
    y[:, 30:] += 1.0
    mask_x = sep(x, torch.tensor([50]))[2]["mask_spk1"]
    mask_y = sep(y, torch.tensor([50]))[2]["mask_spk1"]
    assert not torch.allclose(mask_x[:, 25:30], mask_y[:, 25:30], atol=1e-4)


def test_causal_receptive_field_is_exact():
    # Per-frame norm: output frame t depends on exactly the input frames t - rf + 1 .. t.
    torch.manual_seed(0)
    sep = small_sep(causal=True, norm_type="chLN").eval()
    rf = sep.receptive_field
    assert rf == 1 + 2 * 2 * (1 + 2 + 4)
    t = 40
    x = torch.randn(1, 45, 20, requires_grad=True)
    sep(x, None)[2]["mask_spk1"][0, t].sum().backward()
    influence = x.grad[0].abs().sum(dim=-1)
    assert (influence[: t - rf + 1] == 0).all()
    assert (influence[t + 1 :] == 0).all()
    assert (influence[t - rf + 1 : t + 1] > 0).all()


def test_cumulative_layer_norm_matches_manual_statistics():
    torch.manual_seed(0)
    norm = CumulativeLayerNorm(4)
    x = torch.randn(2, 4, 6) * 3 + 1
    out = norm(x)
    for t in range(6):
        past = x[:, :, : t + 1]
        mean = past.mean(dim=(1, 2), keepdim=True)
        var = past.var(dim=(1, 2), unbiased=False, keepdim=True)
        expected = (x[:, :, t : t + 1] - mean) / torch.sqrt(var + 1e-8)
        assert torch.allclose(out[:, :, t : t + 1], expected, atol=1e-5)


def test_fused_global_layer_norm_equals_espnet_gln_with_its_state_dict():
    from espnet2.enh.layers.tcn import GlobalLayerNorm

    torch.manual_seed(0)
    reference = GlobalLayerNorm(8)
    with torch.no_grad():
        reference.gamma.uniform_(0.5, 1.5)
        reference.beta.uniform_(-0.5, 0.5)
    fused = FusedGlobalLayerNorm(8)
    fused.load_state_dict(reference.state_dict())  # checkpoints of either load in the other
    x = (torch.randn(3, 8, 50) * 4 + 2).requires_grad_()
    y_ref, y = reference(x), fused(x)
    assert torch.allclose(y, y_ref, atol=1e-5)
    weights = torch.randn_like(y)
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), [x, reference.gamma, reference.beta])
    grads = torch.autograd.grad((y * weights).sum(), [x, fused.gamma, fused.beta])
    for g, g_ref in zip(grads, grads_ref):
        assert torch.allclose(g, g_ref, atol=1e-4, rtol=1e-4)
    # Without the affine part each item has zero mean and unit variance over channels and frames.
    plain = FusedGlobalLayerNorm(8)(x.detach())
    assert torch.allclose(plain.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(plain.var(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-4)


@pytest.mark.parametrize("nonlinear", ["sigmoid", "relu", "softmax"])
def test_mask_ranges(nonlinear):
    torch.manual_seed(0)
    sep = small_sep(num_spk=2, nonlinear=nonlinear)
    masks = torch.stack(list(sep(torch.randn(2, 30, 20) * 4, None)[2].values()))
    if nonlinear == "sigmoid":
        assert masks.min() > 0 and masks.max() < 1
    elif nonlinear == "relu":
        assert masks.min() >= 0 and (masks == 0).any() and masks.max() > 1e-3
    else:
        assert torch.allclose(masks.sum(dim=0), torch.ones_like(masks[0]), atol=1e-6)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    sep = small_sep()
    masked = sep(torch.randn(2, 25, 20), torch.tensor([25, 25]))[0][0]
    masked.pow(2).mean().backward()
    frozen = [name for name, p in sep.named_parameters() if not p.requires_grad]
    # Only the unused residual conv of the last block (kept for the paper's counts).
    assert frozen == ["blocks.5.res_conv.weight", "blocks.5.res_conv.bias"]
    for name, p in sep.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_complex_input_is_masked_by_magnitude_mask():
    torch.manual_seed(0)
    sep = small_sep()
    x = torch.randn(2, 9, 20, dtype=torch.complex64)
    masked, _, others = sep(x, None)
    assert masked[0].dtype == torch.complex64
    assert torch.allclose(others["mask_spk1"], sep(x.abs(), None)[2]["mask_spk1"])
    ct = ComplexTensor(x.real, x.imag)
    assert isinstance(sep(ct, None)[0][0], ComplexTensor)


def test_conditioning_hook_and_widen_input():
    class Recording(ConvTasNetSkip):
        def condition_block_input(self, x, index, additional):
            self.calls.append((index, x.shape[1], additional["tag"]))
            extra = additional["emb"][:, :, None].expand(-1, -1, x.shape[-1])
            return torch.cat([x, extra], dim=1)

    torch.manual_seed(0)
    plain = small_sep()
    cond = Recording(20, layer=3, stack=2, bottleneck_dim=8, hidden_dim=16, skip_dim=12)
    cond.load_state_dict(plain.state_dict())
    for block in cond.blocks:
        block.widen_input(5)
    cond.calls = []
    x = torch.randn(2, 17, 20)
    out = cond(x, None, {"tag": "t", "emb": torch.randn(2, 5)})[0][0]
    assert cond.calls == [(i, 8, "t") for i in range(6)]
    # New input channels start at zero: the widened model equals the plain one.
    assert torch.allclose(out, plain(x, None)[0][0], atol=1e-6)
    assert n_params(cond) == n_params(plain) + 6 * 5 * 16


def test_forward_through_espnet_model_from_config(build_enh_model):
    torch.manual_seed(0)
    model = build_enh_model(
        {
            **frontend(32),
            "separator": "conv_tasnet_skip",
            "separator_conf": {"preset": "cpu", "causal": True},
            "criterions": [
                {"name": "snr", "conf": {}, "wrapper": "fixed_order", "wrapper_conf": {}}
            ],
        }
    )
    assert model.separator.causal and model.separator.norm_type == "cLN"
    lengths = torch.tensor([1601, 1203])
    mix = torch.randn(2, 1601)
    mix[1, 1203:] = 0
    ref = torch.randn(2, 1601)
    loss, stats, weight = model(mix, lengths, speech_ref1=ref)
    assert torch.isfinite(loss) and set(stats) == {"loss", "snr_loss"}
    loss.backward()
    assert model.separator.mask_conv.weight.grad.abs().sum() > 0
    est, feature_mix, feature_pre, others = model.forward_enhance(mix, lengths)
    assert est[0].shape == (2, 1601)
    frames = (1601 - KERNEL) // STRIDE + 1
    assert feature_pre[0].shape == feature_mix.shape == (2, frames, 32)
    assert torch.allclose(feature_pre[0], feature_mix * others["mask_spk1"])


@pytest.mark.parametrize("norm_type", ["cLN", "chLN"])
def test_streaming_chunks_equal_full_forward(norm_type):
    torch.manual_seed(0)
    sep = small_sep(causal=True, norm_type=norm_type, num_spk=2).eval()
    x = torch.randn(2, 40, 20) * 3 + 0.5
    full_masked, _, full_others = sep(x, None)
    buffer, pieces, start = None, [], 0
    for size in [1, 1, 3, 7, 1, 12, 15]:  # sums to 40
        masked, buffer, others = sep.forward_streaming(x[:, start : start + size], buffer)
        assert masked[1].shape == (2, size, 20) and list(others) == ["mask_spk1", "mask_spk2"]
        pieces.append(masked)
        start += size
    for spk in range(2):
        streamed = torch.cat([p[spk] for p in pieces], dim=1)
        assert torch.allclose(streamed, full_masked[spk], atol=1e-5)
    with pytest.raises(ValueError, match="streaming needs causal=True"):
        small_sep().forward_streaming(x[:, :1])


def test_registered_in_espnet_separator_choices():
    import espnet2_pse  # noqa: F401
    from espnet2.tasks.enh import separator_choices

    from espnet2_pse.separators.gru_mask import GRUMaskNet

    assert separator_choices.get_class("conv_tasnet_skip") is ConvTasNetSkip
    assert separator_choices.get_class("gru_mask") is GRUMaskNet
    assert {"conv_tasnet_skip", "gru_mask"} <= set(separator_choices.choices())


def test_compressed_stft_features_through_espnet_model(build_enh_model):
    """magnitude_exponent 0.3 on an STFT front-end (the stft model): the mask sees |X|^0.3 and
    multiplies the complex STFT; other exponents are refused."""
    torch.manual_seed(0)
    stft = {"n_fft": 64, "win_length": 64, "hop_length": 16, "window": "hann"}
    conf = {"layer": 3, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8}
    model = build_enh_model({"encoder": "stft", "encoder_conf": stft, "decoder": "stft", "decoder_conf": stft,
                             "separator": "conv_tasnet_skip", "separator_conf": {**conf, "magnitude_exponent": 0.3},
                             "criterions": [{"name": "snr", "conf": {}, "wrapper": "fixed_order", "wrapper_conf": {}}]})
    mix = torch.randn(2, 1600)
    est, feature_mix, feature_pre, others = model.forward_enhance(mix, torch.tensor([1600, 1600]))
    assert est[0].shape == (2, 1600)
    plain = ConvTasNetSkip(33, **conf)
    plain.load_state_dict(model.separator.state_dict())
    magnitude = abs(feature_mix)
    expected = plain(magnitude.clamp_min(1e-8) ** 0.3, None)[2]["mask_spk1"]
    assert torch.allclose(others["mask_spk1"], expected, atol=1e-6)
    assert not torch.allclose(others["mask_spk1"], plain(magnitude, None)[2]["mask_spk1"], atol=1e-3)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="magnitude_exponent must be in"):
            ConvTasNetSkip(33, **conf, magnitude_exponent=bad)


def test_complex_mask_corrects_phase_and_streams():
    """mask_type complex: a bounded complex mask (|M| < 1) that can rotate phase, which no real
    mask can; causal chunks equal the whole signal; bad settings and real input are refused."""
    torch.manual_seed(0)
    conf = dict(layer=3, stack=1, bottleneck_dim=8, hidden_dim=16, skip_dim=8, magnitude_exponent=0.3)
    x = torch.randn(2, 30, 20, dtype=torch.complex64)
    target = 0.5j * x  # half the level, a quarter turn of phase
    errors = {}
    for mask_type in ("real", "complex"):
        sep = ConvTasNetSkip(20, mask_type=mask_type, **conf)
        errors[mask_type] = fit_relative_error(sep, x, target)
    # A real mask m >= 0 can at best output 0 (relative error 1); the complex one learns the turn.
    assert errors["real"] > 0.95 and errors["complex"] < 0.2, errors
    assert sep(x, None)[2]["mask_spk1"].abs().max() < 1

    causal = ConvTasNetSkip(20, mask_type="complex", causal=True, **conf).eval()
    whole = causal(x, None)[0][0]
    buffer, pieces = None, []
    for start in range(0, 30, 7):
        masked, buffer, _ = causal.forward_streaming(x[:, start : start + 7], buffer)
        pieces.append(masked[0])
    assert torch.allclose(torch.cat(pieces, dim=1), whole, atol=1e-5)
    assert isinstance(causal(ComplexTensor(x.real, x.imag), None)[0][0], ComplexTensor)
    with pytest.raises(ValueError, match="needs a complex encoder output"):
        causal(x.abs(), None)
    with pytest.raises(ValueError, match="nonlinear must stay 'sigmoid'"):
        ConvTasNetSkip(20, mask_type="complex", nonlinear="relu", **conf)
    with pytest.raises(ValueError, match="mask_type 'polar' is not one of"):
        ConvTasNetSkip(20, mask_type="polar", **conf)
