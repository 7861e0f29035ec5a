"""The Python API (``espnet2_pse.load`` / ``espnet2_pse.personalize``) against the commands.

Every call is checked against what the command-line path gives on the same input: the
enhancer against ``pse-enhance`` files, the stream against the ONNX graph of ``pse-export
--streaming`` run by ONNX Runtime, the export against the enhancer itself.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import espnet2_pse
from espnet2_pse.bin import enhance
from espnet2_pse.export.fast_model import UnsupportedModelError
from espnet2_pse.inference.model_loading import ModelNotFoundError
from test.export.conftest import SMALL_TCN, make_signal, packed_model
from test.user.conftest import TINY_DATA_OPTS, voice, write_user_recordings
from test.user.test_personalize import TINY_NETWORK

REPO = Path(__file__).resolve().parents[2]
GENERALIST = REPO / "espnet2_pse" / "pretrained" / "generalist_stft.zip"
CONDITIONED = REPO / "espnet2_pse" / "pretrained" / "conditioned_stft.zip"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def causal_zip(tmp_path_factory) -> Path:
    conf = {**SMALL_TCN, "causal": True, "magnitude_exponent": 0.3}
    return packed_model(tmp_path_factory.mktemp("causal"), "stft", conf, seed=3)


@pytest.fixture(scope="module")
def generalist():
    return espnet2_pse.load(GENERALIST)


def test_arrays_in_any_layout_and_rate_give_the_commands_output(generalist, tmp_path):
    """(T,), (T, C), (C, T), a list and a torch tensor, at 44.1 kHz: mono at the input's rate
    and length, equal to the file pse-enhance writes from the same samples."""
    rng = np.random.default_rng(0)
    x = 0.3 * voice(rng, 2.5, 44100) + 0.05 * rng.standard_normal(int(2.5 * 44100)).astype(np.float32)
    stereo = np.stack([x, 0.5 * x], axis=1)
    y = generalist(stereo, 44100)
    assert y.shape == (x.size,) and y.dtype == np.float32
    np.testing.assert_array_equal(generalist(stereo.T, 44100), y)
    np.testing.assert_array_equal(generalist(torch.from_numpy(stereo.mean(axis=1)), 44100),
                                  generalist(list(stereo.mean(axis=1)), 44100))
    sf.write(str(tmp_path / "in.wav"), stereo, 44100, subtype="FLOAT")
    assert enhance.main(["--model", str(GENERALIST), str(tmp_path / "in.wav"), "--out_dir",
                         str(tmp_path / "cli"), "--quiet"]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "cli" / "in.wav"), dtype="float32")[0], y, atol=1e-6)
    # The network does something: the output is not the input.
    assert np.abs(y - stereo.mean(axis=1)).max() > 1e-3


def test_enhance_file_writes_an_equal_file_and_refuses_its_input(generalist, tmp_path):
    x = make_signal(2.0)
    sf.write(str(tmp_path / "a.flac"), x, 16000)
    result = generalist.enhance_file(tmp_path / "a.flac", tmp_path / "out" / "a.wav")
    written, rate = sf.read(str(tmp_path / "out" / "a.wav"), dtype="float32")
    assert (rate, written.shape, result.frames, result.input_channels) == (16000, x.shape, x.size, 1)
    reference = generalist(sf.read(str(tmp_path / "a.flac"), dtype="float32")[0], 16000)
    np.testing.assert_allclose(written, reference, atol=1e-4)  # 16-bit output of the flac's subtype
    with pytest.raises(ValueError, match="overwrite its input"):
        generalist.enhance_file(tmp_path / "a.flac", tmp_path / "a.flac")
    assert sf.info(str(tmp_path / "a.flac")).frames == x.size


@pytest.mark.parametrize("bad, message", [
    (np.zeros(0, np.float32), "shape"),
    (np.zeros((2, 3, 400), np.float32), "shape"),
    (np.array([0.1, np.nan] * 4000, np.float32), "NaN"),
    (np.zeros(100, np.float32), "samples"),  # shorter than the STFT frame
])
def test_bad_signals_are_refused_with_a_reason(generalist, bad, message):
    with pytest.raises(ValueError, match=message):
        generalist(bad, 16000)


def test_stream_equals_the_exported_streaming_graph(causal_zip, tmp_path):
    """16-ms pushes through enhancer.stream() give the numbers ONNX Runtime gives with the
    graph that pse-export --streaming writes; the whole-signal export gives enhancer(x)."""
    from espnet2_pse.bin.export import main as export
    from espnet2_pse.export.onnx_export import OnnxEnhancer, ort_step, session, stream_spec
    from espnet2_pse.export.streaming import StreamSession

    enhancer = espnet2_pse.load(causal_zip)
    x = make_signal(1.3, seed=4)

    def pushed(stream, chunk=256):
        pieces = [stream.push(x[i:i + chunk]) for i in range(0, x.size, chunk)]
        return np.concatenate(pieces + [stream.finish()])

    ours = pushed(enhancer.stream())
    assert export(["--model", str(causal_zip), "--out", str(tmp_path / "cli.onnx"), "--streaming"]) == 0
    sess = session(tmp_path / "cli.onnx")
    theirs = pushed(StreamSession(ort_step(sess), stream_spec(sess)))
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(ours, enhancer(x, 16000), atol=1e-4)  # causal: streaming == offline
    api_graph = enhancer.export_onnx(tmp_path / "api.onnx", streaming=True)
    np.testing.assert_allclose(pushed(StreamSession(ort_step(session(api_graph)), stream_spec(session(api_graph)))),
                               ours, atol=1e-5)
    whole = OnnxEnhancer(enhancer.export_onnx(tmp_path / "whole.onnx"))
    np.testing.assert_allclose(whole(x), enhancer(x, 16000), atol=1e-4)


def test_a_non_causal_model_does_not_stream(generalist):
    with pytest.raises(UnsupportedModelError, match="causal"):
        generalist.stream()


def test_conditioned_model_takes_a_path_samples_or_an_embedding(tmp_path):
    """The shipped conditioned model: enrollment as a file, as samples at their rate and as the
    teacher's embedding of them give the same output; a missing enrollment is refused."""
    rng = np.random.default_rng(5)
    enroll = voice(rng, 3.0, 22050)
    sf.write(str(tmp_path / "me.wav"), enroll, 22050, subtype="FLOAT")
    mixture = make_signal(2.0, seed=6)
    by_path = espnet2_pse.load(CONDITIONED, enroll=tmp_path / "me.wav")
    by_samples = espnet2_pse.load(CONDITIONED, enroll=enroll, enroll_sample_rate=22050)
    assert by_path.conditioned and "speaker-conditioned" in repr(by_path)
    y = by_path(mixture, 16000)
    np.testing.assert_allclose(by_samples(mixture, 16000), y, atol=1e-5)
    embedding = by_path.engine.additional["enroll_ref1"][0].numpy()
    np.testing.assert_allclose(espnet2_pse.load(CONDITIONED, enroll=embedding)(mixture, 16000), y, atol=1e-5)
    with pytest.raises(ValueError, match="speaker-conditioned: give --enroll"):
        espnet2_pse.load(CONDITIONED)
    with pytest.raises(ValueError, match="256 dims"):
        espnet2_pse.load(CONDITIONED, enroll=np.ones(7, np.float32))
    with pytest.raises(UnsupportedModelError, match="conditioned"):
        by_path.stream()


def test_two_pass_refinement_gives_the_commands_output(tmp_path):
    """refine_options=RefinementOptions(two_pass=True) with the packed student: the file that
    ``pse-enhance --refine --refine_two_pass`` writes, with every update counted (open gate)."""
    from espnet2_pse.inference.conditioned import RefinementOptions

    rng = np.random.default_rng(7)
    sf.write(str(tmp_path / "me.wav"), voice(rng, 3.0, 16000), 16000, subtype="FLOAT")
    x = make_signal(3.0, seed=8)
    sf.write(str(tmp_path / "in.wav"), x, 16000, subtype="FLOAT")
    enhancer = espnet2_pse.load(CONDITIONED, enroll=tmp_path / "me.wav", refine=True,
                                refine_options=RefinementOptions(two_pass=True, cos_threshold=-1.0))
    y = enhancer(x, 16000)
    assert enhancer.engine.last_stats["accepted"] == enhancer.engine.last_stats["updates"] > 0
    assert enhance.main(["--model", str(CONDITIONED), "--enroll", str(tmp_path / "me.wav"), "--refine",
                         "--refine_two_pass", "--refine_cos_threshold", "-1", str(tmp_path / "in.wav"),
                         "--out_dir", str(tmp_path / "cli"), "--quiet"]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "cli" / "in.wav"), dtype="float32")[0], y, atol=1e-5)
    static = espnet2_pse.load(CONDITIONED, enroll=tmp_path / "me.wav")(x, 16000)
    assert np.abs(y - static).max() > 1e-4  # the refined embedding does condition the second pass


def test_loading_errors_name_the_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nope.zip"):
        espnet2_pse.load(tmp_path / "nope.zip")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.yaml").write_text("separator: no_such_separator\n")
    torch.save({}, tmp_path / "broken" / "model.pth")
    with pytest.raises(espnet2_pse.api.ModelLoadError, match="cannot load model .*broken"):
        espnet2_pse.load(tmp_path / "broken")
    with pytest.raises(ValueError, match="not speaker-conditioned"):
        espnet2_pse.load(GENERALIST, enroll=np.ones(256, np.float32))


def test_personalize_reports_progress_stops_on_request_and_resumes(tmp_path):
    """personalize() runs the command's pipeline: progress dicts per step and epoch with a
    growing fraction; an exception from the callback stops it, and the same call resumes from
    the last epoch and returns the loaded model."""
    write_user_recordings(tmp_path / "noisy", seed=0)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_NETWORK))
    options = dict(data_opts=TINY_DATA_OPTS, config=tmp_path / "tiny.yaml", chunk_seconds=0.5, base="none",
                   lr=3e-3, max_epoch=3, segments_per_epoch=3, work_dir=tmp_path / "work", quiet=True,
                   snapshot_epochs=[1, 3])

    class Stop(Exception):
        pass

    def stop_after_two(event):
        events.append(event)
        if event.get("epoch") == 2:
            raise Stop

    events = []
    with pytest.raises(Stop):
        espnet2_pse.personalize(tmp_path / "noisy", tmp_path / "me.zip", progress=stop_after_two, **options)
    assert not (tmp_path / "me.zip").exists()
    assert [e["step"] for e in events] == ["data", "zsl", "zsl", "zsl"]
    assert [e.get("epoch") for e in events[2:]] == [1, 2] and events[-1]["max_epoch"] == 3
    assert 0 < events[2]["fraction"] < events[3]["fraction"] < 1
    exp = tmp_path / "work" / "exp" / "zsl"
    assert sorted(p.name for p in exp.glob("snapshot_ep*.pth")) == ["snapshot_ep1.pth"]

    events = []
    enhancer = espnet2_pse.personalize(tmp_path / "noisy", tmp_path / "me.zip", progress=events.append, **options)
    assert [e.get("epoch") for e in events if e["step"] == "zsl"] == [None, 3]  # resumed after epoch 2
    assert events[-1] == {**events[-1], "step": "done", "fraction": 1.0}
    assert isinstance(enhancer, espnet2_pse.Enhancer) and (tmp_path / "me.zip").is_file()
    x = make_signal(1.0)
    assert enhancer(x, 16000).shape == x.shape
    snapshots = json.loads((exp / "snapshots.json").read_text())
    assert set(snapshots) == {"1", "3"} and snapshots["3"]["resumed"] and not snapshots["1"]["resumed"]
    assert 0 < snapshots["1"]["elapsed_s"]
    assert espnet2_pse.load(exp / "snapshot_ep1.pth")(x, 16000).shape == x.shape  # a .pth beside config.yaml
    log = (tmp_path / "work" / "personalize.log").read_text()
    assert "resuming the interrupted training" in log
    with pytest.raises(TypeError, match="unknown option 'max_epochs'"):
        espnet2_pse.personalize(tmp_path / "noisy", tmp_path / "me.zip", max_epochs=3)
    assert not logging.getLogger().handlers or all(
        getattr(h, "baseFilename", "").find(str(tmp_path)) < 0 for h in logging.getLogger().handlers)
