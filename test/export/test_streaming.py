"""The streaming step with explicit state, driven in 10-20 ms chunks, equals the whole signal."""

import numpy as np
import pytest

from espnet2_pse.export.fast_model import FastEnhancer, UnsupportedModelError
from espnet2_pse.export.streaming import StreamingEnhancer, StreamSession, StreamSpec, torch_step
from test.export.conftest import FS, SMALL_TCN, enh_model, espnet_output, make_signal


def run_stream(session: StreamSession, x: np.ndarray, chunk: int) -> np.ndarray:
    pieces = [session.push(x[..., start : start + chunk]) for start in range(0, x.shape[-1], chunk)]
    return np.concatenate(pieces + [session.finish()], axis=-1)


@pytest.fixture(scope="module", params=[("stft", "cLN"), ("stft", "chLN"), ("conv", "cLN")], ids=str)
def causal(request):
    kind, norm = request.param
    model = enh_model(kind, {**SMALL_TCN, "causal": True, "norm_type": norm,
                             "magnitude_exponent": 0.3 if kind == "stft" else 1.0})
    return model, StreamingEnhancer(FastEnhancer.from_espnet(model))


@pytest.mark.parametrize("chunk_ms", [10, 16, 20])
def test_chunks_give_the_whole_signal_output(causal, chunk_ms):
    model, stream = causal
    x = make_signal(1.2)[: FS + 3123]  # not a whole number of hops
    expected = espnet_output(model, x)
    out = run_stream(StreamSession(torch_step(stream), stream.spec), x, chunk_ms * FS // 1000)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_outputs_follow_the_inputs_with_the_stated_latency(causal):
    """Each push returns what became final: the output lags by about one frame plus a hop."""
    model, stream = causal
    spec = stream.spec
    session = StreamSession(torch_step(stream), spec)
    chunk, lag = 256, []
    x = make_signal(1.0)
    for start in range(0, x.size, chunk):
        session.push(x[start : start + chunk])
        lag.append(session.received - session.emitted)
    # After the start, the lag stays below the algorithmic latency plus one chunk.
    assert max(lag[4:]) <= spec.latency_samples + chunk
    assert spec.latency_ms == 1000.0 * (512 if stream.frontend.kind == "stft" else 32) / FS


def test_batch_of_streams_and_spec_round_trip(causal):
    model, stream = causal
    x = np.stack([make_signal(1.0, seed=1), make_signal(1.0, seed=2)])
    out = run_stream(StreamSession(torch_step(stream), stream.spec), x, 320)
    for row in range(2):
        np.testing.assert_allclose(out[row], espnet_output(model, x[row]), atol=1e-5)
    assert StreamSpec.from_json(stream.spec.to_json()) == stream.spec


def test_too_short_stream_and_non_causal_model_are_refused(causal):
    _, stream = causal
    session = StreamSession(torch_step(stream), stream.spec)
    session.push(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="stream too short: 10 samples"):
        session.finish()
    with pytest.raises(UnsupportedModelError, match="not causal"):
        StreamingEnhancer(FastEnhancer.from_espnet(enh_model("stft", SMALL_TCN)))
    gru = enh_model("stft", {"hidden_size": 8, "num_layers": 1, "bidirectional": False}, "gru_mask")
    with pytest.raises(UnsupportedModelError, match="not GRUMaskNet"):
        StreamingEnhancer(FastEnhancer.from_espnet(gru))
