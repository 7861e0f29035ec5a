"""Distillation losses: InfoNCE against a hand computation, baselines, learning on a toy set."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from espnet2_pse.spk.kd_losses import CosineKDLoss, InfoNCELoss, MSEKDLoss
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder
from test.conftest import synth_voice


def manual_infonce(s, t, tau, positives):
    """-1/N sum_i log( sum_{j in P(i)} exp(c_ij / tau) / sum_j exp(c_ij / tau) ), in loops."""
    total = 0.0
    for i in range(len(s)):
        sims = [float(np.dot(s[i], t[j]) / (np.linalg.norm(s[i]) * np.linalg.norm(t[j])))
                for j in range(len(t))]
        num = sum(math.exp(sims[j] / tau) for j in positives[i])
        den = sum(math.exp(c / tau) for c in sims)
        total -= math.log(num / den)
    return total / len(s)


S = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, -2.0]])
T = np.array([[0.8, 0.6], [0.0, 1.0], [1.0, -1.0]])


def test_infonce_equals_hand_computation():
    loss = InfoNCELoss(temperature=0.5)(torch.tensor(S), torch.tensor(T))
    expected = manual_infonce(S, T, 0.5, [[0], [1], [2]])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_infonce_symmetric_averages_both_directions():
    loss = InfoNCELoss(temperature=0.5, symmetric=True)(torch.tensor(S), torch.tensor(T))
    expected = 0.5 * (manual_infonce(S, T, 0.5, [[0], [1], [2]])
                      + manual_infonce(T, S, 0.5, [[0], [1], [2]]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_infonce_speaker_positives_and_alignment_term():
    labels = torch.tensor([7, 7, 3])
    loss = InfoNCELoss(temperature=0.5, align_weight=0.5)(torch.tensor(S), torch.tensor(T), labels)
    cos = [np.dot(S[i], T[i]) / (np.linalg.norm(S[i]) * np.linalg.norm(T[i])) for i in range(3)]
    expected = manual_infonce(S, T, 0.5, [[0, 1], [0, 1], [2]]) + 0.5 * np.mean(1 - np.array(cos))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    without = InfoNCELoss(temperature=0.5, speaker_positives=False)(
        torch.tensor(S), torch.tensor(T), labels
    )
    assert without.item() == pytest.approx(manual_infonce(S, T, 0.5, [[0], [1], [2]]), rel=1e-6)


def test_regression_baselines():
    s, t = torch.tensor(S), torch.tensor(T)
    cos = F.cosine_similarity(s, t, dim=-1)
    assert CosineKDLoss()(s, t).item() == pytest.approx((1 - cos).mean().item(), rel=1e-6)
    # Between unit vectors ||a - b||^2 = 2 - 2 cos.
    assert MSEKDLoss()(s, t).item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-6)
    assert CosineKDLoss()(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match="teacher's dimension"):
        InfoNCELoss()(torch.randn(2, 192), torch.randn(2, 256))


def test_infonce_decreases_when_training_a_student_on_a_toy_set():
    """Four toy voices, fixed random 'teacher' directions per voice: the loss must drop."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    f0s = [100.0, 160.0, 230.0, 320.0] * 2
    audio = torch.tensor(np.stack([synth_voice(rng, 1.0, f0) for f0 in f0s]))
    teacher = F.normalize(torch.randn(4, 192), dim=-1).repeat(2, 1)
    labels = torch.arange(4).repeat(2)
    student = TinySpeakerEncoder(channels=32, attention_channels=16)
    loss_fn = InfoNCELoss(temperature=0.1)
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = loss_fn(student(audio), teacher, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
