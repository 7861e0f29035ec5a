"""``pse-export`` on packed zips, and ``enhance --backend`` giving the same files."""

import logging
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from espnet2_pse.bin import enhance
from espnet2_pse.bin.export import main
from espnet2_pse.export.onnx_export import OnnxEnhancer
from espnet2_pse.inference.model_loading import load_separate_speech
from test.export.conftest import FS, espnet_output, make_signal


def test_whole_signal_export_of_a_packed_zip(stft_zip, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "me.onnx"
    assert main(["--model", str(stft_zip), "--out", str(out)]) == 0
    assert "SI-SDR agreement" in caplog.text and ": ok" in caplog.text
    x = make_signal(2.0, seed=7)
    model = load_separate_speech(stft_zip).enh_model
    np.testing.assert_allclose(OnnxEnhancer(out)(x), espnet_output(model, x), atol=1e-4)


def test_streaming_is_refused_for_a_non_causal_model(stft_zip, tmp_path, caplog):
    assert main(["--model", str(stft_zip), "--out", str(tmp_path / "s.onnx"), "--streaming"]) == 2
    assert "streaming export is not possible: the model is not causal" in caplog.text
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("zip_fixture,latency", [("causal_stft_zip", "32.0 ms"), ("causal_conv_zip", "2.0 ms")])
def test_streaming_export_reports_latency_and_passes_its_check(zip_fixture, latency, request, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = request.getfixturevalue(zip_fixture)
    assert main(["--model", str(path), "--out", str(tmp_path / "s.onnx"), "--streaming"]) == 0
    assert f"algorithmic latency {latency}" in caplog.text
    assert "16-ms chunks" in caplog.text and ": ok" in caplog.text


def test_bad_model_is_a_usage_error(tmp_path):
    assert main(["--model", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "x.onnx")]) == 2


def test_enhance_backends_write_the_same_samples(causal_conv_zip, tmp_path):
    x = make_signal(3.0, seed=8)
    sf.write(str(tmp_path / "in.wav"), x, FS, subtype="FLOAT")
    outputs = {}
    for backend in ("espnet", "torch", "onnx"):
        out_dir = tmp_path / backend
        assert enhance.main(["--model", str(causal_conv_zip), str(tmp_path / "in.wav"), "--out_dir",
                             str(out_dir), "--quiet", "--backend", backend, "--chunk_seconds", "2",
                             "--overlap_seconds", "0.5"]) == 0
        outputs[backend] = sf.read(str(out_dir / "in.wav"), dtype="float32")[0]
    np.testing.assert_allclose(outputs["torch"], outputs["espnet"], atol=1e-5)
    np.testing.assert_allclose(outputs["onnx"], outputs["espnet"], atol=1e-4)


def test_module_entry_point_prints_help():
    done = subprocess.run([sys.executable, "-m", "espnet2_pse.bin.export", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--streaming" in done.stdout
