"""ONNX graphs run by ONNX Runtime equal the PyTorch model (4-s inputs, 16-ms stream chunks)."""

import numpy as np
import pytest

from espnet2_pse.export.fast_model import FastEnhancer
from espnet2_pse.export.onnx_export import (
    OnnxEnhancer,
    export_streaming,
    export_whole,
    metadata,
    ort_step,
    session,
    stream_spec,
)
from espnet2_pse.export.streaming import StreamingEnhancer, StreamSession
from test.export.conftest import FS, SMALL_TCN, enh_model, espnet_output, make_signal


@pytest.mark.parametrize("kind,conf", [
    ("conv", {**SMALL_TCN, "norm_type": "gLN"}),
    ("stft", {**SMALL_TCN, "magnitude_exponent": 0.3}),
])
def test_whole_signal_graph_matches_pytorch(kind, conf, tmp_path):
    model = enh_model(kind, conf)
    path = export_whole(FastEnhancer.from_espnet(model), tmp_path / "model.onnx")
    enhancer = OnnxEnhancer(path)
    assert enhancer.min_samples == (32 if kind == "conv" else 257)
    x = make_signal(4.0)
    expected = espnet_output(model, x)
    out = enhancer(x)
    assert out.shape == x.shape
    assert np.abs(out - expected).max() <= 1e-4
    # The length axis is dynamic, and so is the batch.
    short = make_signal(0.7, seed=3)[: 11111]
    both = enhancer(np.stack([short, short[::-1].copy()]))
    np.testing.assert_allclose(both[0], espnet_output(model, short), atol=1e-4)
    np.testing.assert_allclose(both[1], espnet_output(model, short[::-1].copy()), atol=1e-4)


@pytest.mark.parametrize("kind", ["stft", "conv"])
def test_streaming_graph_in_16ms_chunks_matches_the_whole_signal(kind, tmp_path):
    conf = {**SMALL_TCN, "causal": True, "magnitude_exponent": 0.3 if kind == "stft" else 1.0}
    model = enh_model(kind, conf, seed=4)
    path = export_streaming(StreamingEnhancer(FastEnhancer.from_espnet(model)), tmp_path / "stream.onnx")
    sess = session(path)
    meta = metadata(sess)
    spec = stream_spec(sess)
    assert meta["pse_graph"] == "streaming"
    assert float(meta["latency_ms"]) == (32.0 if kind == "stft" else 2.0)
    assert spec.hop == (128 if kind == "stft" else 16)
    x = make_signal(4.0, seed=5)
    chunk = 16 * FS // 1000
    stream = StreamSession(ort_step(sess, spec), spec)
    pieces = [stream.push(x[start : start + chunk]) for start in range(0, x.size, chunk)]
    out = np.concatenate(pieces + [stream.finish()])
    expected = espnet_output(model, x)
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() <= 1e-4


def test_other_graphs_are_refused(tmp_path):
    model = enh_model("stft", {**SMALL_TCN, "causal": True})
    path = export_streaming(StreamingEnhancer(FastEnhancer.from_espnet(model)), tmp_path / "stream.onnx")
    with pytest.raises(ValueError, match="not a whole-signal graph"):
        OnnxEnhancer(path)
