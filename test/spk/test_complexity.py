"""Hook-based MAC counter against hand counts."""

import math

import torch
import torchaudio

from espnet2_pse.spk.complexity import count_macs, count_parameters, macs_per_second


def test_layer_rules_match_hand_counts():
    x = torch.randn(2, 8, 100)
    conv = torch.nn.Conv1d(8, 16, 3, padding=1, groups=2)
    assert count_macs(conv, lambda: conv(x)) == 2 * 16 * 100 * (8 // 2) * 3
    linear = torch.nn.Linear(8, 5)
    assert count_macs(linear, lambda: linear(torch.randn(4, 8))) == 4 * 5 * 8
    deconv = torch.nn.ConvTranspose1d(8, 1, 16, stride=8)
    assert count_macs(deconv, lambda: deconv(x)) == 2 * 8 * 100 * 1 * 16
    gru = torch.nn.GRU(8, 6, num_layers=2, bidirectional=True, batch_first=True)
    steps = 2 * 100
    expected = 2 * steps * 3 * (8 * 6 + 36) + 2 * steps * 3 * (12 * 6 + 36)
    assert count_macs(gru, lambda: gru(x.transpose(1, 2))) == expected


def test_nested_model_and_stft_are_counted_once_per_call():
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=160, n_mels=40)
    model = torch.nn.Sequential(mel)
    frames = 16000 // 160 + 1
    expected = frames * (512 * math.log2(512)) + frames * 40 * 257
    assert count_macs(model, lambda: model(torch.randn(1, 16000))) == int(expected)
    # Hooks are removed afterwards: a second count starts from zero.
    assert count_macs(model, lambda: model(torch.randn(1, 16000))) == int(expected)


def test_macs_per_second_scales_with_duration():
    conv = torch.nn.Conv1d(1, 4, 16, stride=8)
    per_second = macs_per_second(conv, lambda x: conv(x[:, None]), seconds=2.0)
    frames = (32000 - 16) // 8 + 1
    assert per_second == 4 * 16 * frames / 2.0
    assert count_parameters(conv) == 4 * 16 + 4
