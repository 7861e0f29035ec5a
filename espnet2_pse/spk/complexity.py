"""Parameter and multiply-accumulate (MAC) counts of models, with forward hooks.

Counted: Conv1d/Conv2d, ConvTranspose1d, Linear, GRU/LSTM, and torchaudio's Spectrogram
(FFT, approximated as n_fft * log2(n_fft) real MACs per frame) and MelScale. Element-wise
operations, norms, activations and functional convolutions (e.g. sinc filterbanks written
with F.conv1d) are not counted, so the totals are lower bounds dominated by the layers that
matter.
"""

import math
from typing import Callable, Dict

import torch
import torchaudio


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _conv(module, inputs, output) -> int:
    kernel = math.prod(module.kernel_size)
    return output.numel() * (module.in_channels // module.groups) * kernel


def _conv_transpose(module, inputs, output) -> int:
    kernel = math.prod(module.kernel_size)
    return inputs[0].numel() * (module.out_channels // module.groups) * kernel


def _linear(module, inputs, output) -> int:
    return output.numel() * module.in_features


def _recurrent(module, inputs, output) -> int:
    x = inputs[0]
    if isinstance(x, torch.nn.utils.rnn.PackedSequence):
        steps = x.data.size(0)  # sum of the sequence lengths
    else:
        steps = x.size(0) * x.size(1) if x.dim() == 3 else x.size(0)
    gates = 3 if isinstance(module, torch.nn.GRU) else 4
    directions = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    total = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else hidden * directions
        total += directions * steps * gates * (width * hidden + hidden * hidden)
    return total


def _spectrogram(module, inputs, output) -> int:
    frames = output.numel() // output.size(-2)  # (..., freq, frames)
    return int(frames * module.n_fft * math.log2(module.n_fft))


def _mel_scale(module, inputs, output) -> int:
    return output.numel() * module.fb.size(0)


_RULES: Dict[type, Callable] = {
    torch.nn.Conv1d: _conv,
    torch.nn.Conv2d: _conv,
    torch.nn.ConvTranspose1d: _conv_transpose,
    torch.nn.Linear: _linear,
    torch.nn.GRU: _recurrent,
    torch.nn.LSTM: _recurrent,
    torchaudio.transforms.Spectrogram: _spectrogram,
    torchaudio.transforms.MelScale: _mel_scale,
}


def count_macs(model: torch.nn.Module, run: Callable[[], object]) -> int:
    """MACs spent by the counted layers of ``model`` while ``run()`` executes (no grad)."""
    total = [0]
    handles = []
    for module in model.modules():
        rule = _RULES.get(type(module))
        if rule is not None:
            handles.append(
                module.register_forward_hook(
                    lambda m, i, o, rule=rule: total.__setitem__(0, total[0] + rule(m, i, o))
                )
            )
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def macs_per_second(
    model: torch.nn.Module,
    forward: Callable[[torch.Tensor], object],
    seconds: float = 4.0,
    sample_rate: int = 16000,
) -> float:
    """MACs per second of audio of ``forward(x)`` on a (1, seconds * sample_rate) input."""
    was_training = model.training
    model.eval()
    x = torch.randn(1, int(seconds * sample_rate))
    try:
        return count_macs(model, lambda: forward(x)) / seconds
    finally:
        model.train(was_training)
