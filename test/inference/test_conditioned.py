"""Speaker-conditioned inference: ``pse-enhance`` (static, teacher, refined) and ``pse_inference``.

The conditioned model is causal (cumulative layer norm) with an encoder whose kernel equals
its stride, so the output at sample t depends only on samples up to t's frame. Each refined hop
sees the whole past (the files are shorter than ``--refine_context_s``), so with alpha = 1,
where the embedding never moves, refined and static enhancement must agree sample for sample.
"""

import argparse
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet2_pse.bin.enhance import main as enhance
from espnet2_pse.bin.pse_inference import main as pse_inference
from espnet2_pse.inference.conditioned import ConditionedEnhancer
from espnet2_pse.inference.model_loading import load_separate_speech
from test.spk.conftest import TINY_TEACHER
from test.user.conftest import voice

REPO = Path(__file__).resolve().parents[2]

D = 32  # embedding dimension of model, student and teacher
CODEC = {"channel": 16, "kernel_size": 16, "stride": 16}
# Refinement that accepts every update of the random student (no cosine or silence gate).
OPEN_GATE = ["--refine_window_s", "1.0", "--refine_hop_s", "0.5",
             "--refine_cos_threshold", "-1", "--refine_min_level_db", "none"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dry_run(task, out, cmd):
    """Write ``out``/config.yaml through the task's own parser (no data needed)."""
    task.main(cmd=[*cmd, "--dry_run", "true", "--output_dir", str(out),
                   "--train_data_path_and_name_and_type", "x,speech_mix,sound", "--train_shape_file", "x",
                   "--valid_data_path_and_name_and_type", "x,speech_mix,sound", "--valid_shape_file", "x"])
    return task.build_model_from_file(out / "config.yaml", None, "cpu")[0]


def build_pse_model(out, separator, separator_conf):
    """config.yaml + model.pth of a PSETask model with random weights far from the init."""
    from espnet2_pse.tasks.pse import PSETask

    out.mkdir(parents=True)
    config = {"encoder": "conv", "encoder_conf": CODEC, "decoder": "conv", "decoder_conf": CODEC,
              "separator": separator, "separator_conf": separator_conf,
              "criterions": [{"name": "pse_distance", "conf": {"distance": "snr"}, "wrapper": "fixed_order",
                              "wrapper_conf": {"weight": 1.0}}],
              "use_tensorboard": False, "use_matplotlib": False}
    (out / "train.yaml").write_text(yaml.safe_dump(config))
    model = dry_run(PSETask, out, ["--config", str(out / "train.yaml")])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator))
    torch.save(model.state_dict(), out / "model.pth")
    return out


@pytest.fixture(scope="module")
def cond_model(tmp_path_factory):
    return build_pse_model(tmp_path_factory.mktemp("m") / "cond", "pconv_tasnet",
                           {"preset": "tiny", "causal": True, "embed_dim": D})


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    return build_pse_model(tmp_path_factory.mktemp("m") / "plain", "conv_tasnet_skip",
                           {"layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8})


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A spk_distill_train layout (config.yaml + .pth, student.* tensors) of a random student."""
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    out = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    model = dry_run(SpkDistillTask, out, ["--student_conf", f"embed_dim={D}", "--student_conf", "channels=16",
                                          "--student_conf", "attention_channels=8"])
    torch.save(model.state_dict(), out / "student.pth")
    return ["--student_config", str(out / "config.yaml"), "--student_model", str(out / "student.pth")]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A random tiny ECAPA speaker model with D-dim output, saved as spk_train saves one."""
    from espnet2.tasks.spk import SpeakerTask

    out = tmp_path_factory.mktemp("teacher")
    args = vars(SpeakerTask.get_parser().parse_args([]))
    args.update(TINY_TEACHER, projector_conf={"output_size": D})
    torch.manual_seed(0)
    model = SpeakerTask.build_model(argparse.Namespace(**args))
    (out / "config.yaml").write_text(yaml.safe_dump(args))
    torch.save(model.state_dict(), out / "teacher.pth")
    return {"config": out / "config.yaml", "model": out / "teacher.pth"}


def write_noisy(path, seconds=2.0, fs=22050, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    x = voice(rng, seconds, fs) + 0.03 * rng.standard_normal(int(seconds * fs)).astype(np.float32)
    sf.write(str(path), np.stack([x, 0.8 * x], axis=1) if channels == 2 else x, fs)
    return path


def save_embedding(path, seed):
    np.save(path, np.random.default_rng(seed).standard_normal(D).astype(np.float32))
    return path


def run_enhance(model, src, out, *options):
    return enhance(["--model", str(model), str(src), "--out_dir", str(out), "--quiet", *map(str, options)])


def test_static_npy_enrollment_writes_input_length_and_follows_the_embedding(cond_model, tmp_path):
    src = write_noisy(tmp_path / "noisy.wav")
    outputs = []
    for seed in (1, 2):
        out = tmp_path / f"out{seed}"
        assert run_enhance(cond_model, src, out, "--enroll", save_embedding(tmp_path / f"e{seed}.npy", seed)) == 0
        info = sf.info(str(out / "noisy.wav"))
        assert (info.samplerate, info.channels, info.frames) == (22050, 1, sf.info(str(src)).frames)
        y, _ = sf.read(str(out / "noisy.wav"))
        assert np.isfinite(y).all() and np.abs(y).max() > 1e-3
        outputs.append(y)
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3


def test_refined_with_alpha_one_equals_static_and_moves_below_one(cond_model, student, tmp_path, capsys):
    src = write_noisy(tmp_path / "noisy.wav")
    enroll = save_embedding(tmp_path / "e.npy", 1)
    assert run_enhance(cond_model, src, tmp_path / "static", "--enroll", enroll) == 0
    static, fs = sf.read(str(tmp_path / "static/noisy.wav"))
    refined = {}
    for alpha in ("1.0", "0.0"):
        out = tmp_path / f"alpha{alpha}"
        assert run_enhance(cond_model, src, out, "--enroll", enroll, "--refine", *student,
                           *OPEN_GATE, "--refine_alpha", alpha) == 0
        refined[alpha], rate = sf.read(str(out / "noisy.wav"))
        assert rate == fs and refined[alpha].shape == static.shape
        # Updates due at 1.0, 1.5 and 2.0 s of the 2-s file, all accepted by the open gate.
        assert f"{out / 'noisy.wav'}: refinement accepted 3/3" in capsys.readouterr().out
    np.testing.assert_allclose(refined["1.0"], static, atol=1e-4)
    assert np.abs(refined["0.0"] - static).max() > 1e-3  # the student's embedding does condition


def test_two_pass_enhances_the_whole_file_with_the_embedding_refined_on_the_static_output(
        cond_model, student, tmp_path, capsys):
    """--refine_two_pass: alpha 1 gives the static output; alpha 0 gives the static pass
    conditioned on the embedding that the refiner draws from the static output, everywhere."""
    from espnet2_pse.data.audio import load_audio
    from espnet2_pse.inference.conditioned import load_student
    from espnet2_pse.spk.refinement import EmbeddingRefiner

    src = write_noisy(tmp_path / "noisy.wav", fs=16000, channels=1)
    enroll = save_embedding(tmp_path / "e.npy", 1)
    assert run_enhance(cond_model, src, tmp_path / "static", "--enroll", enroll) == 0
    static = load_audio(tmp_path / "static/noisy.wav", 16000)
    refiner = EmbeddingRefiner(load_student(student[1], student[3]), torch.from_numpy(np.load(enroll)),
                               window_s=1.0, hop_s=0.5, alpha=0.0, cos_threshold=-1, min_level_db=None)
    refiner.push(torch.from_numpy(static))
    np.save(tmp_path / "refined.npy", refiner.embedding.numpy())
    assert run_enhance(cond_model, src, tmp_path / "expected", "--enroll", tmp_path / "refined.npy") == 0
    expected = load_audio(tmp_path / "expected/noisy.wav", 16000)
    for alpha, reference in (("1.0", static), ("0.0", expected)):
        out = tmp_path / f"two_pass{alpha}"
        assert run_enhance(cond_model, src, out, "--enroll", enroll, "--refine", *student, *OPEN_GATE,
                           "--refine_alpha", alpha, "--refine_two_pass") == 0
        assert f"{out / 'noisy.wav'}: refinement accepted 3/3" in capsys.readouterr().out
        np.testing.assert_allclose(load_audio(out / "noisy.wav", 16000), reference, atol=1e-4)
    assert np.abs(expected - static).max() > 1e-3  # the refined embedding does condition


def test_a_session_carries_the_refined_embedding_to_the_next_file(cond_model, student, tmp_path):
    """Two copies of one file: refined alone, each restarts from e_0 and both outputs agree;
    in a session (--refine_session) the first is unchanged and the second starts from the
    embedding the first ended with, so it differs from its first sample on."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        write_noisy(folder / f"{name}.wav", channels=1)
    enroll = save_embedding(tmp_path / "e.npy", 1)
    outputs = {}
    for mode, extra in (("alone", []), ("session", ["--refine_session"])):
        out = tmp_path / mode
        assert run_enhance(cond_model, folder, out, "--enroll", enroll, "--refine", *student, *OPEN_GATE,
                           "--refine_alpha", "0.0", *extra) == 0
        outputs[mode] = {name: sf.read(str(out / f"{name}.wav"))[0] for name in ("a", "b")}
    np.testing.assert_allclose(outputs["alone"]["a"], outputs["alone"]["b"], atol=1e-6)
    np.testing.assert_allclose(outputs["session"]["a"], outputs["alone"]["a"], atol=1e-6)
    first_hop = int(0.5 * 22050)  # before b's own first update, only the carried embedding differs
    assert np.abs(outputs["session"]["b"][:first_hop] - outputs["alone"]["b"][:first_hop]).max() > 1e-4


def test_enrollment_audio_is_embedded_by_the_teacher(cond_model, teacher, tmp_path):
    from espnet2_pse.data.audio import load_audio
    from espnet2_pse.spk.embedder import load_embedder

    src = write_noisy(tmp_path / "noisy.wav")
    enroll_wav = write_noisy(tmp_path / "me.wav", seconds=1.5, fs=16000, channels=1, seed=5)
    assert run_enhance(cond_model, src, tmp_path / "audio", "--enroll", enroll_wav,
                       "--teacher_config", teacher["config"], "--teacher_model", teacher["model"]) == 0
    embed = load_embedder("teacher", teacher["config"], teacher["model"])
    np.save(tmp_path / "me.npy", embed(torch.from_numpy(load_audio(enroll_wav))).numpy())
    assert run_enhance(cond_model, src, tmp_path / "npy", "--enroll", tmp_path / "me.npy") == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "audio/noisy.wav"))[0],
                               sf.read(str(tmp_path / "npy/noisy.wav"))[0], atol=1e-4)


def test_packed_model_carries_its_teacher_and_student(cond_model, teacher, student, tmp_path, capsys):
    """stage 8's pack of a conditioned model: enhance needs no --teacher_* / --student_*."""
    from espnet2_pse.bin.pack_models import main as pack_models

    student_config, student_model = student[1], student[3]
    line = (f"{cond_model}/config.yaml {cond_model}/model.pth {tmp_path}/cond.zip "
            f"spk_teacher_config={teacher['config']} spk_teacher_model={teacher['model']} "
            f"spk_student_config={student_config} spk_student_model={student_model}")
    (tmp_path / "models.txt").write_text(line + "\n")
    pack_models(["--list", str(tmp_path / "models.txt")])
    src = write_noisy(tmp_path / "noisy.wav")
    enroll_wav = write_noisy(tmp_path / "me.wav", seconds=1.5, fs=16000, channels=1, seed=5)
    assert run_enhance(tmp_path / "cond.zip", src, tmp_path / "packed", "--enroll", enroll_wav,
                       "--refine", *OPEN_GATE) == 0
    assert f"{tmp_path / 'packed/noisy.wav'}: refinement accepted 3/3" in capsys.readouterr().out
    # The same teacher and student given explicitly: the same output.
    assert run_enhance(tmp_path / "cond.zip", src, tmp_path / "explicit", "--enroll", enroll_wav, "--refine",
                       *OPEN_GATE, *student, "--teacher_config", teacher["config"],
                       "--teacher_model", teacher["model"]) == 0
    np.testing.assert_allclose(sf.read(str(tmp_path / "packed/noisy.wav"))[0],
                               sf.read(str(tmp_path / "explicit/noisy.wav"))[0], atol=1e-5)
    (tmp_path / "bad.txt").write_text(f"{cond_model}/config.yaml {cond_model}/model.pth x.zip model_file=y\n")
    with pytest.raises(SystemExit, match="bad extra 'model_file=y'"):
        pack_models(["--list", str(tmp_path / "bad.txt")])


def test_a_packed_pretrained_teacher_is_used_by_its_tag(tmp_path):
    from espnet2_pse.bin.enhance import get_parser, use_packed_speaker_encoders

    (tmp_path / "spk_teacher_tag.yaml").write_text("model_tag: resemblyzer\n")
    extras = {"spk_teacher_tag": tmp_path / "spk_teacher_tag.yaml", "spk_student_model": tmp_path / "s.pth"}
    args = get_parser().parse_args(["--model", "m.zip", "--out_dir", "o", "x.wav"])
    use_packed_speaker_encoders(args, extras)
    assert (args.teacher_tag, args.teacher_config, args.student_model) == ("resemblyzer", None, str(tmp_path / "s.pth"))
    args = get_parser().parse_args(["--model", "m.zip", "--out_dir", "o", "--teacher_tag", "espnet/other", "x.wav"])
    use_packed_speaker_encoders(args, extras)
    assert args.teacher_tag == "espnet/other"  # the user's own teacher wins


@pytest.mark.parametrize("case", ["no_enroll", "plain_with_enroll", "audio_without_teacher",
                                  "refine_without_student", "wrong_dimension"])
def test_usage_mistakes_exit_2_with_a_message(case, cond_model, plain_model, tmp_path, caplog):
    src = write_noisy(tmp_path / "noisy.wav", seconds=0.5)
    npy = save_embedding(tmp_path / "e.npy", 1)
    np.save(tmp_path / "e8.npy", np.ones(8, dtype=np.float32))
    model, options, expected = {
        "no_enroll": (cond_model, [], ["is speaker-conditioned", "--enroll"]),
        "plain_with_enroll": (plain_model, ["--enroll", npy], ["not speaker-conditioned", "--enroll"]),
        "audio_without_teacher": (cond_model, ["--enroll", src],
                                  [f"--enroll {src} is audio", "--teacher_config/--teacher_model", "--teacher_tag"]),
        "refine_without_student": (cond_model, ["--enroll", npy, "--refine"],
                                   ["--refine needs", "--student_config", "--student_model"]),
        "wrong_dimension": (cond_model, ["--enroll", tmp_path / "e8.npy"],
                            [f"{tmp_path / 'e8.npy'}: 8-dim embedding", f"expects {D} dims"]),
    }[case]
    assert run_enhance(model, src, tmp_path / "out", *options) == 2
    for text in expected:
        assert text in caplog.text
    assert not (tmp_path / "out").exists()


def write_data(tmp_path, keys, enroll_keys):
    """wav.scp (16 kHz mono mixtures) and enroll.scp (npy embeddings, one per key)."""
    wavs, embeddings = {}, {}
    for i, key in enumerate(keys):
        wavs[key] = write_noisy(tmp_path / f"{key}.wav", seconds=1.0 + 0.5 * i, fs=16000, channels=1, seed=i)
        embeddings[key] = save_embedding(tmp_path / f"{key}.npy", 10 + i)
    (tmp_path / "wav.scp").write_text("".join(f"{k} {wavs[k]}\n" for k in keys))
    (tmp_path / "enroll.scp").write_text("".join(f"{k} {embeddings[k]}\n" for k in enroll_keys))
    return wavs, embeddings


def inference_cmd(model, tmp_path, out):
    return ["--train_config", str(model / "config.yaml"), "--model_file", str(model / "model.pth"),
            "--output_dir", str(out), "--num_workers", "0",
            "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech_mix,sound",
            "--data_path_and_name_and_type", f"{tmp_path / 'enroll.scp'},enroll_ref1,npy"]


def test_pse_inference_uses_each_keys_enrollment(cond_model, student, tmp_path):
    keys = ["uttA", "uttB"]
    wavs, embeddings = write_data(tmp_path, keys, keys)
    pse_inference(inference_cmd(cond_model, tmp_path, tmp_path / "static"))
    pse_inference(inference_cmd(cond_model, tmp_path, tmp_path / "refined")
                  + ["--refine", *student, *OPEN_GATE, "--refine_alpha", "1.0"])

    separate_speech = load_separate_speech(cond_model)
    for run in ("static", "refined"):
        scp = dict(line.split() for line in (tmp_path / run / "spk1.scp").read_text().splitlines())
        assert sorted(scp) == keys
        for key in keys:
            assert scp[key] == str(tmp_path / run / "wavs/1" / f"{key}.wav")
            y, fs = sf.read(scp[key], dtype="float32")
            x, _ = sf.read(str(wavs[key]), dtype="float32")
            assert fs == 16000 and y.shape == x.shape
            own, other = (ConditionedEnhancer(separate_speech, np.load(embeddings[k])).enhance_array(x, fs)
                          for k in (key, keys[1 - keys.index(key)]))
            np.testing.assert_allclose(y, own, atol=1e-4)
            assert np.abs(y - other).max() > 1e-3


def test_pse_inference_names_a_missing_enrollment_key(cond_model, tmp_path):
    write_data(tmp_path, ["uttA", "uttB"], ["uttA"])
    with pytest.raises(SystemExit) as failure:
        pse_inference(inference_cmd(cond_model, tmp_path, tmp_path / "out"))
    message = str(failure.value.code)
    assert f"{tmp_path / 'enroll.scp'} (enroll_ref1) has no entry for key uttB" in message
    assert not (tmp_path / "out").exists()


def test_pse_inference_refine_usage_errors(cond_model, tmp_path, capsys):
    write_data(tmp_path, ["uttA"], ["uttA"])
    plain_data = inference_cmd(cond_model, tmp_path, tmp_path / "out")[:-2]  # without enroll_ref1
    for cmd, expected in ((inference_cmd(cond_model, tmp_path, tmp_path / "out") + ["--refine"], "--student_model"),
                          (plain_data + ["--refine", "--student_model", "s.pth"], "--refine needs enroll_ref1"),
                          (inference_cmd(cond_model, tmp_path, tmp_path / "out")
                           + ["--refine", "--student_model", "s.pth", "--refine_session"], "every key has its own")):
        with pytest.raises(SystemExit) as failure:
            pse_inference(cmd)
        assert failure.value.code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _real_voice(prefix: str, voice: str, skip: int, seconds: float) -> np.ndarray:
    """``seconds`` of one debian_real voice at 16 kHz: its clips from the ``skip``-th on, joined."""
    from espnet2_pse.data.audio import load_audio
    from espnet2_pse.data.debian_sources import VOICE_FAMILIES, default_debian_dir, matching_files

    family = next(f for f in VOICE_FAMILIES if f.prefix == prefix)
    clips = [p for p, v in matching_files(default_debian_dir(), family.package, family.pattern, family.exclude)
             if v == voice][skip:]
    pieces, need = [], int(seconds * 16000)
    for path in clips:
        pieces.append(load_audio(path, sample_rate=16000))
        if sum(map(len, pieces)) >= need:
            break
    return np.concatenate(pieces)[:need].astype(np.float32)


def test_the_shipped_conditioned_model_keeps_the_enrolled_voice(tmp_path):
    """espnet2_pse/pretrained/conditioned_stft.zip on two real voices that no model here trains on
    or is benchmarked with (two Fish Fillets actors, Czech and Dutch), mixed at 0 dB so that
    loudness tells nothing: enrolled with 5 s of one voice, it brings that voice out (SI-SDR to
    it well above the mixture's) and, enrolled with the other, drops it."""
    from espnet2_pse.data.mixing import mix_at_snr
    from espnet2_pse.scoring.metrics import si_sdr

    model = REPO / "espnet2_pse" / "pretrained" / "conditioned_stft.zip"
    voices = {"a": ("fillets_cs", "m"), "b": ("fillets_nl", "v")}
    for name, (prefix, variant) in voices.items():
        sf.write(str(tmp_path / f"enroll_{name}.wav"), _real_voice(prefix, variant, 0, 5.0), 16000)
    (tmp_path / "mix").mkdir()
    sources = []
    for i in range(3):
        a, b = (_real_voice(*voices[n], 60 + 20 * i, 4.0) for n in "ab")
        mixture = mix_at_snr(torch.from_numpy(a).double(), torch.from_numpy(b).double(), 0.0).numpy()
        sf.write(str(tmp_path / "mix" / f"m{i}.wav"), (0.9 * mixture / np.abs(mixture).max()).astype(np.float32), 16000)
        sources.append({"a": a, "b": b, "mix": mixture})
    for name in voices:
        assert run_enhance(model, tmp_path / "mix", tmp_path / f"out_{name}", "--enroll", tmp_path / f"enroll_{name}.wav") == 0
    gains = {}
    for name, other in (("a", "b"), ("b", "a")):
        kept = [si_sdr(sf.read(str(tmp_path / f"out_{name}" / f"m{i}.wav"))[0], s[name]) - si_sdr(s["mix"], s[name])
                for i, s in enumerate(sources)]
        dropped = [si_sdr(sf.read(str(tmp_path / f"out_{other}" / f"m{i}.wav"))[0], s[name]) - si_sdr(s["mix"], s[name])
                   for i, s in enumerate(sources)]
        gains[name] = (float(np.mean(kept)), float(np.mean(dropped)))
    assert all(kept > dropped + 6.0 for kept, dropped in gains.values()), gains
    assert np.mean([kept for kept, _ in gains.values()]) > 2.0, gains
