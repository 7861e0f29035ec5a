"""GRUMaskNet: the authors' sizes, STFT wiring, padding, streaming, causality, masks."""

import pytest
import torch

from espnet2_pse.separators.gru_mask import PRESETS, GRUMaskNet

BINS = 513  # n_fft 1024
# Rounded sizes of methods.md (bidirectional) and the exact totals they round.
PAPER_THOUSANDS = {"tiny": 157, "small": 363, "medium": 922, "large": 2630}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def analytic_total(F, H, layers, bidirectional, n_src=1):
    directions = 2 if bidirectional else 1
    total = 0
    for layer in range(layers):
        inputs = F if layer == 0 else directions * H
        total += directions * 3 * (inputs * H + H * H + 2 * H)
    return total + directions * H * n_src * F + n_src * F


def stft_frontend(n_fft=1024, hop=256):
    conf = {"n_fft": n_fft, "hop_length": hop, "window": "hann"}
    return {"encoder": "stft", "encoder_conf": conf, "decoder": "stft", "decoder_conf": conf}


@pytest.mark.parametrize("preset", sorted(PAPER_THOUSANDS))
def test_parameter_counts(preset, build_enh_model):
    model = build_enh_model(
        {**stft_frontend(), "separator": "gru_mask", "separator_conf": {"preset": preset}}
    )
    hidden = PRESETS[preset]["hidden_size"]
    assert isinstance(model.separator, GRUMaskNet) and model.separator.input_dim == BINS
    assert n_params(model) == analytic_total(BINS, hidden, 2, True)
    assert round(n_params(model) / 1000) == PAPER_THOUSANDS[preset]


def test_unidirectional_count_and_errors():
    assert n_params(GRUMaskNet(BINS, preset="tiny", bidirectional=False)) == analytic_total(
        BINS, 32, 2, False
    )
    with pytest.raises(ValueError, match="unknown preset 'xl'"):
        GRUMaskNet(BINS, preset="xl")
    with pytest.raises(ValueError, match="hidden_size=48 contradicts preset 'small'"):
        GRUMaskNet(BINS, preset="small", hidden_size=48)
    with pytest.raises(ValueError, match=r"expected input \(B, T, 513\)"):
        GRUMaskNet(BINS, preset="tiny")(torch.randn(1, 4, 257), None)


def test_padding_does_not_change_short_item():
    torch.manual_seed(0)
    sep = GRUMaskNet(16, hidden_size=8).eval()
    long, short = torch.rand(1, 21, 16), torch.rand(1, 13, 16)
    batch = torch.zeros(2, 21, 16)
    batch[0], batch[1, :13] = long[0], short[0]
    masks = sep(batch, torch.tensor([21, 13]))[2]["mask_spk1"]
    alone = sep(short, torch.tensor([13]))[2]["mask_spk1"]
    assert torch.allclose(masks[1, :13], alone[0], atol=1e-6)
    assert torch.allclose(masks[0], sep(long, torch.tensor([21]))[2]["mask_spk1"][0], atol=1e-6)


def test_streaming_matches_full_forward_and_is_causal():
    torch.manual_seed(0)
    sep = GRUMaskNet(16, hidden_size=8, bidirectional=False).eval()
    x = torch.rand(2, 15, 16, dtype=torch.float32) * torch.exp(1j * torch.rand(2, 15, 16))
    full_masked, _, full_others = sep(x, None)
    state, frames = None, []
    for t in range(15):
        masked, state, _ = sep.forward_streaming(x[:, t : t + 1], state)
        frames.append(masked[0])
    assert torch.allclose(torch.cat(frames, dim=1), full_masked[0], atol=1e-6)
    y = x.clone()
    y[:, 9:] *= 4
    assert torch.allclose(sep(y, None)[2]["mask_spk1"][:, :9], full_others["mask_spk1"][:, :9])
    with pytest.raises(ValueError, match="bidirectional=False"):
        GRUMaskNet(16, hidden_size=8).forward_streaming(x[:, :1])


def test_masks_in_unit_interval_and_gradients_flow():
    torch.manual_seed(0)
    sep = GRUMaskNet(16, hidden_size=8, num_spk=2)
    x = torch.randn(2, 11, 16, dtype=torch.complex64) * 10
    masked, _, others = sep(x, torch.tensor([11, 7]))
    masks = torch.stack(list(others.values()))
    assert masks.shape == (2, 2, 11, 16) and masks.min() > 0 and masks.max() < 1
    assert torch.allclose(masked[1], x * others["mask_spk2"])
    sum(m.abs().pow(2).mean() for m in masked).backward()
    for name, p in sep.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_forward_through_espnet_model_from_config(build_enh_model):
    torch.manual_seed(0)
    model = build_enh_model(
        {
            **stft_frontend(512, 128),
            "separator": "gru_mask",
            "separator_conf": {"hidden_size": 16, "bidirectional": False},
        }
    )
    lengths = torch.tensor([3001, 2111])
    mix, ref = torch.randn(2, 3001), torch.randn(2, 3001)
    loss, stats, _ = model(mix, lengths, speech_ref1=ref)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.separator.linear.weight.grad.abs().sum() > 0
    est = model.forward_enhance(mix, lengths)[0]
    assert est[0].shape == (2, 3001)
