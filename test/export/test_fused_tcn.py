"""FusedTCN: the folded mask network equals ConvTasNetSkip's, whole and chunk by chunk."""

import pytest
import torch

from espnet2_pse.export.fused_tcn import FusedTCN
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
from test.export.conftest import perturb


def separator(**conf) -> ConvTasNetSkip:
    sep = ConvTasNetSkip(40, layer=3, stack=2, bottleneck_dim=8, hidden_dim=16, skip_dim=12, **conf)
    sep = perturb(sep, seed=3, scale=0.3)
    for module in sep.modules():  # BN: running statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(generator=torch.Generator().manual_seed(1))
            module.running_var.uniform_(0.5, 2.0)
    return sep


@pytest.mark.parametrize("conf", [
    dict(norm_type="gLN"),
    dict(norm_type="BN"),
    dict(norm_type="chLN"),
    dict(norm_type="gLN", magnitude_exponent=0.3),
    dict(norm_type="gLN", num_spk=2, nonlinear="softmax"),
    dict(norm_type="chLN", num_spk=2, nonlinear="relu"),
    dict(causal=True),  # cLN
    dict(causal=True, norm_type="chLN", kernel=4),
])
def test_fused_mask_equals_the_separator(conf):
    sep = separator(**conf)
    x = torch.rand(2, 150, 40) * 2.0
    with torch.no_grad():
        expected = sep(x, torch.tensor([150, 150]))[2]["mask_spk1"]
    mask, state = FusedTCN(sep)(x)
    assert state is None and mask.shape == expected.shape
    torch.testing.assert_close(mask, expected, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("norm_type", ["cLN", "chLN"])
def test_causal_chunks_give_the_whole_signal_mask(norm_type):
    sep = separator(causal=True, norm_type=norm_type)
    fused = FusedTCN(sep)
    x = torch.rand(1, 150, 40)
    whole, _ = fused(x)
    state, pieces = fused.initial_state(1), []
    for start, size in zip([0, 1, 8, 40, 41], [1, 7, 32, 1, 109]):  # uneven chunks, single frames
        mask, state = fused(x[:, start : start + size], state)
        pieces.append(mask)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, rtol=1e-5, atol=1e-6)
    assert state["tcn_history"].shape == (1, sum(fused.history_sizes), 16)
    if norm_type == "cLN":
        assert state["frames_seen"].item() == 150 and state["norm_sums"].dtype == torch.float64
    else:
        assert "norm_sums" not in state


def test_refuses_streams_for_non_causal_and_conditioned_separators():
    with pytest.raises(ValueError, match="only a causal model"):
        FusedTCN(separator())(torch.rand(1, 5, 40), {})
    from espnet2_pse.separators.pconv_tasnet import PConvTasNet

    with pytest.raises(ValueError, match="PConvTasNet is not supported"):
        FusedTCN(PConvTasNet(40, layer=2, stack=1, bottleneck_dim=8, hidden_dim=16, skip_dim=8, embed_dim=4))
