"""The networks ``personalize`` can train: the sections of a training config that define one."""

import copy
from typing import Dict

# Keys of a training config that define the network (taken from --base when given).
MODEL_KEYS = ("encoder", "encoder_conf", "separator", "separator_conf", "decoder", "decoder_conf",
              "mask_module", "mask_module_conf", "model_conf")
_STFT = {"n_fft": 512, "win_length": 512, "hop_length": 128, "window": "hann"}
# --model_size (with --base none): "stft" and "cpu" are sized for a laptop CPU (the cpu
# model's 2 ms encoder hop is stride 16 at 16 kHz); the others are the paper's sizes.
_MODELS = {
    "stft": {"encoder": "stft", "encoder_conf": dict(_STFT), "decoder": "stft", "decoder_conf": dict(_STFT),
             "separator": "conv_tasnet_skip",
             "separator_conf": {"layer": 7, "stack": 2, "bottleneck_dim": 64, "hidden_dim": 256, "skip_dim": 64,
                                "magnitude_exponent": 0.3}},
    "cpu": {"encoder": "conv", "encoder_conf": {"channel": 64, "kernel_size": 32, "stride": 16},
            "decoder": "conv", "decoder_conf": {"channel": 64, "kernel_size": 32, "stride": 16},
            "separator": "conv_tasnet_skip",
            "separator_conf": {"layer": 6, "stack": 1, "bottleneck_dim": 16, "hidden_dim": 32, "skip_dim": 16}},
}
MODEL_SIZES = ("stft", "cpu", "tiny", "small", "medium", "large")


def model_section(size: str) -> Dict:
    if size in _MODELS:
        return copy.deepcopy(_MODELS[size])
    conv = {"channel": 512, "kernel_size": 16, "stride": 8}
    return {"encoder": "conv", "encoder_conf": dict(conv), "decoder": "conv", "decoder_conf": dict(conv),
            "separator": "conv_tasnet_skip", "separator_conf": {"preset": size}}


def causal_section(model: Dict) -> Dict:
    """The same network, causal: left-only convolutions and cumulative norms (same weights)."""
    if model.get("separator") != "conv_tasnet_skip":
        raise ValueError(f"--causal needs a conv_tasnet_skip network, got separator {model.get('separator')!r}")
    conf = dict(model.get("separator_conf") or {})
    if conf.get("norm_type") not in (None, "gLN", "cLN", "chLN"):
        raise ValueError(f"--causal: norm_type {conf['norm_type']!r} has no causal counterpart")
    conf["causal"] = True
    conf["norm_type"] = "chLN" if conf.get("norm_type") == "chLN" else "cLN"
    return {**model, "separator_conf": conf}
