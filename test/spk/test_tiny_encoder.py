"""TinySpeakerEncoder: size budget, output contract, padding, input checks."""

import pytest
import torch

from espnet2_pse.spk.complexity import count_parameters
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder

BUDGET = 160_000


def test_default_student_fits_the_parameter_budget():
    n = count_parameters(TinySpeakerEncoder())
    assert 100_000 < n <= BUDGET, n


def test_embeddings_are_unit_norm_in_the_teacher_dimension():
    torch.manual_seed(0)
    for dim in (192, 256):
        student = TinySpeakerEncoder(embed_dim=dim)
        emb = student(torch.randn(3, 16000))
        assert emb.shape == (3, dim)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_padding_does_not_change_a_row_embedding():
    torch.manual_seed(0)
    student = TinySpeakerEncoder().eval()
    x = torch.randn(2, 24000)
    x[1, 16000:] = 0.0
    batch = student(x, torch.tensor([24000, 16000]))
    alone = student(x[1:, :16000])
    # Only the edge frames differ (STFT padding at the end of the valid part).
    assert torch.dot(batch[1], alone[0]) > 0.999


def test_different_inputs_give_different_embeddings():
    torch.manual_seed(0)
    student = TinySpeakerEncoder().eval()
    emb = student(torch.randn(2, 16000))
    assert torch.dot(emb[0], emb[1]) < 0.9999


def test_bad_input_shape_is_reported():
    with pytest.raises(ValueError, match="mono"):
        TinySpeakerEncoder()(torch.randn(2, 1, 16000))
    with pytest.raises(ValueError, match="odd"):
        TinySpeakerEncoder(kernel_size=4)
