"""A real tiny run through ESPnet's machinery: stats, training, inference, packing, loading."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml

TINY_CONFIG = {
    "encoder": "conv",
    "encoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "decoder": "conv",
    "decoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "separator": "tcn",
    "separator_conf": {"num_spk": 1, "layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16},
    "criterions": [
        {"name": "si_snr", "conf": {"eps": 1.0e-7}, "wrapper": "fixed_order", "wrapper_conf": {"weight": 1.0}}
    ],
    "optim": "adam",
    "optim_conf": {"lr": 1.0e-3},
    "max_epoch": 1,
    "batch_type": "unsorted",
    "batch_size": 2,
    "num_workers": 0,
    "use_tensorboard": False,
    "use_matplotlib": False,
    "seed": 0,
}


def run(module: str, *args) -> None:
    """Run an entry point's main() in this process (the same code a shell would run, without
    paying ESPnet's import again); the packed model is loaded in a fresh interpreter below."""
    importlib.import_module(module).main([str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    data = tiny_corpus["dir"]
    config = exp / "config.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    data_args = []
    for split in ("train", "valid"):
        data_args += [
            f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech_mix,sound",
            f"--{split}_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
        ]
    run(
        "espnet2_pse.bin.pse_train", "--config", config, "--collect_stats", "true",
        "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp",
        "--output_dir", exp / "stats_job1", *data_args,
    )
    run("espnet2.bin.aggregate_stats_dirs", "--input_dir", exp / "stats_job1", "--output_dir", exp / "stats")
    run(
        "espnet2_pse.bin.pse_train", "--config", config,
        "--train_shape_file", exp / "stats/train/speech_mix_shape",
        "--valid_shape_file", exp / "stats/valid/speech_mix_shape",
        "--output_dir", exp / "model", *data_args,
    )
    return exp


def test_training_writes_checkpoint_and_config(trained):
    model_dir = trained / "model"
    assert (model_dir / "1epoch.pth").is_file()
    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    assert config["ssl_objective"] is None and config["separator"] == "tcn"
    assert (model_dir / "valid.loss.best.pth").exists()


def test_inference_writes_decodable_wavs(trained, tiny_corpus):
    out = trained / "enhanced"
    run(
        "espnet2_pse.bin.pse_inference",
        "--data_path_and_name_and_type", f"{tiny_corpus['dir']}/wav.scp,speech_mix,sound",
        "--train_config", trained / "model/config.yaml",
        "--model_file", trained / "model/valid.loss.best.pth",
        "--output_dir", out,
    )
    lines = (out / "spk1.scp").read_text().splitlines()
    assert len(lines) == 4
    for line in lines:
        key, path = line.split()
        enhanced, fs = soundfile.read(path)
        mixture, _ = soundfile.read(
            dict(l.split() for l in (tiny_corpus["dir"] / "wav.scp").read_text().splitlines())[key]
        )
        assert fs == 16000 and enhanced.shape == mixture.shape and np.isfinite(enhanced).all()


def test_packed_model_loads_with_stock_separate_speech(trained, tmp_path):
    packed = tmp_path / "model.zip"
    run(
        "espnet2.bin.pack", "enh",
        "--train_config", trained / "model/config.yaml",
        "--model_file", trained / "model/valid.loss.best.pth",
        "--outpath", packed,
    )
    script = (
        "import sys, numpy as np, espnet2_pse\n"
        "from espnet2.bin.enh_inference import SeparateSpeech\n"
        f"sep = SeparateSpeech.from_pretrained(model_tag={str(packed)!r})\n"
        "out = sep(np.random.default_rng(0).standard_normal((1, 8000)).astype('float32'), fs=16000)\n"
        "assert len(out) == 1 and out[0].shape == (1, 8000), [o.shape for o in out]\n"
        "print('enhanced', out[0].shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "enhanced (1, 8000)" in proc.stdout
