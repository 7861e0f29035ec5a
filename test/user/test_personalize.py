"""``python -m espnet2_pse.bin.personalize`` end to end on a tiny synthetic user, then reruns.

One run (module fixture): the person's 8 noisy recordings (8/16/44.1 kHz, mono/stereo,
wav/flac) and 10 s of clean speech -> tiny embedded corpus for the noise banks -> zero-shot
PseudoSE from scratch (``--base none``) -> few-shot fine-tuning -> packed zip. The network
and schedule are shrunk (a 4-block TCN, 0.5 s crops, 2 + 1 short epochs, peak lr 1e-2) so the run
takes about a minute. Other users then start from the first user's model as the base
(and, with ``--teacher_weight``, teacher).
"""

import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_pse.bin import enhance, personalize, personalize_progress
from test.user.conftest import TINY_DATA_OPTS, mix_at, si_sdr, voice, write_user_recordings

TINY_NETWORK = {
    "encoder": "conv", "encoder_conf": {"channel": 32, "kernel_size": 32, "stride": 16},
    "decoder": "conv", "decoder_conf": {"channel": 32, "kernel_size": 32, "stride": 16},
    "separator": "conv_tasnet_skip",
    "separator_conf": {"layer": 4, "stack": 1, "bottleneck_dim": 16, "hidden_dim": 32, "skip_dim": 16},
}


def personalize_args(root: Path, **changes):
    args = {
        "--noisy_dir": root / "noisy", "--clean_dir": root / "clean", "--out": root / "me.zip",
        "--data_opts": TINY_DATA_OPTS, "--config": root / "tiny.yaml", "--chunk_seconds": 0.5, "--base": "none",
        "--lr": 1e-2, "--max_epoch": 2, "--segments_per_epoch": 5, "--fsl_max_epoch": 1,
    }
    args.update(changes)
    return [str(x) for kv in args.items() for x in kv if x is not None]


@pytest.fixture(scope="module")
def personalized(tmp_path_factory):
    root = tmp_path_factory.mktemp("alice")
    write_user_recordings(root / "noisy", seed=0)
    rng = np.random.default_rng(7)
    (root / "clean").mkdir()
    for i in range(2):
        sf.write(str(root / "clean" / f"read{i}.wav"), voice(rng, 5.0, 22050), 22050)
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_NETWORK))
    assert personalize.main(personalize_args(root)) == 0
    return root


def held_out_mixtures(data_root: Path):
    """(mixture, clean) pairs of new utterances of the voice at 0 dB: every inject_val clip
    (noise files never used for training) and fresh white noise."""
    rng = np.random.default_rng(123)
    noises = [line.split()[1] for line in (data_root / "noise/inject_val/wav.scp").read_text().splitlines()]
    pairs = []
    for path in noises:
        speech = voice(rng, 4.0)
        noise = np.resize(sf.read(path, dtype="float32")[0], speech.shape)
        pairs.append((mix_at(speech, noise, 0.0), speech))
    for _ in range(3):
        speech = voice(rng, 4.0)
        pairs.append((mix_at(speech, rng.standard_normal(speech.shape).astype(np.float32), 0.0), speech))
    return pairs


def mean_improvement(separate, pairs) -> float:
    gains = [si_sdr(separate(x), s) - si_sdr(x, s) for x, s in pairs]
    return float(np.mean(gains))


@pytest.mark.filterwarnings("ignore:Expanding a local model")
def test_packed_model_loads_and_improves_si_sdr(personalized):
    from espnet2.bin.enh_inference import SeparateSpeech

    work = personalized / "me_work"
    pairs = held_out_mixtures(work / "data")
    packed = SeparateSpeech.from_pretrained(model_tag=str(personalized / "me.zip"))
    gain = mean_improvement(lambda x: packed(x[None], fs=16000)[0][0], pairs)
    # The zero-shot model alone (no clean speech) must improve too.
    from espnet2_pse.inference.model_loading import load_separate_speech

    zsl = load_separate_speech(work / "exp/zsl/valid.loss.best.pth")
    zsl_gain = mean_improvement(lambda x: zsl(x[None], fs=16000)[0][0], pairs)
    logging.info("SI-SDR improvement at 0 dB: packed (few-shot) %.2f dB, zero-shot %.2f dB", gain, zsl_gain)
    # Measured: +7.4 dB (few-shot) and +7.3 dB (zero-shot), mean over 9 mixtures.
    assert gain > 3.0 and zsl_gain > 3.0


def test_pack_and_selection_records(personalized):
    with zipfile.ZipFile(personalized / "me.zip") as z:
        names = z.namelist()
        meta = yaml.safe_load(z.read("meta.yaml"))
        summary = yaml.safe_load(z.read("exp/fsl/personalize.yaml"))
    # Relative paths only: no machine paths inside the pack.
    assert meta["yaml_files"]["train_config"] == "exp/fsl/config.yaml" and "meta.yaml" in names
    assert meta["files"]["model_file"].startswith("exp/fsl/") and all(not n.startswith("/") for n in names)
    assert summary["few_shot"] is True and summary["selection"] == "valid loss on fsl_val"
    zsl_config = yaml.safe_load((personalized / "me_work/exp/zsl/config.yaml").read_text())
    assert zsl_config["ssl_objective"] == "pseudo_se"
    assert zsl_config["ssl_objective_conf"]["premix_noise_scp"] is None  # the recordings are premixed
    assert zsl_config["valid_data_path_and_name_and_type"][0][0].endswith("speakers/user/preval/wav.scp")
    fsl_config = yaml.safe_load((personalized / "me_work/exp/fsl/config.yaml").read_text())
    assert fsl_config["optim_conf"]["lr"] == 1e-4 and fsl_config["init_param"]


def test_zero_shot_schedule_spans_the_batches_the_run_made(personalized):
    import torch

    work = personalized / "me_work"
    zsl_config = yaml.safe_load((work / "exp/zsl/config.yaml").read_text())
    assert zsl_config["scheduler"] == "onecyclehold" and zsl_config["scheduler_conf"]["max_lr"] == 1e-2
    # The scheduler's own record of how many batches it stepped against its estimate.
    state = torch.load(work / "exp/zsl/checkpoint.pth", map_location="cpu", weights_only=False)["schedulers"][0]
    assert abs(state["last_epoch"] - state["total_steps"]) <= 0.15 * state["total_steps"], state
    # Few-shot fine-tuning stays at its constant rate.
    assert yaml.safe_load((work / "exp/fsl/config.yaml").read_text())["scheduler"] is None


def test_enhance_runs_the_packed_zip(personalized, tmp_path):
    x = mix_at(voice(np.random.default_rng(9), 3.0, 44100), np.random.default_rng(9).standard_normal(3 * 44100), 0.0)
    sf.write(str(tmp_path / "noisy.flac"), np.stack([x, x], axis=1), 44100)
    out = tmp_path / "out"
    assert enhance.main(["--model", str(personalized / "me.zip"), str(tmp_path / "noisy.flac"),
                         "--out_dir", str(out), "--quiet"]) == 0
    info = sf.info(str(out / "noisy.flac"))
    assert (info.samplerate, info.channels, info.frames) == (44100, 1, 3 * 44100)


def test_rerun_skips_resumes_and_refuses_other_settings(personalized, caplog):
    caplog.set_level(logging.INFO)
    best = personalized / "me_work/exp/zsl/valid.loss.best.pth"
    stamp = best.resolve().stat().st_mtime_ns
    # Interrupted after the zero-shot step: the few-shot training has no done marker.
    (personalized / "me_work/exp/fsl/.done").unlink()
    assert personalize.main(personalize_args(personalized)) == 0
    assert "personalize zsl: already trained" in caplog.text
    assert "personalize fsl: resuming the interrupted training" in caplog.text
    assert best.resolve().stat().st_mtime_ns == stamp
    assert (personalized / "me_work/exp/fsl/.done").is_file() and (personalized / "me.zip").is_file()
    caplog.clear()
    assert personalize.main(personalize_args(personalized, **{"--lr": 3e-3})) == 1
    assert "was trained with other settings" in caplog.text


def test_few_shot_options_of_their_own_reuse_the_zero_shot_model(personalized, caplog):
    """The few-shot loss adds the PESQ and eSTOI terms by default; --fsl_config reaches the
    few-shot training only (here an SNR and a PESQ term): the zero-shot model of the work dir
    is reused, not trained again."""
    caplog.set_level(logging.INFO)

    def distances(step):
        config = yaml.safe_load((work / f"exp/{step}/config.yaml").read_text())
        return [c["conf"]["distance"] for c in config["criterions"]]
    work = personalized / "me_work"
    assert distances("zsl") == ["snr", "cspec"] and distances("fsl") == ["snr", "cspec", "pesq", "estoi"]
    listener = personalized / "listener.yaml"
    listener.write_text(yaml.safe_dump({"criterions": [
        {"name": "pse_distance", "conf": {"distance": name}, "wrapper": "fixed_order", "wrapper_conf": {"weight": 1.0}}
        for name in ("snr", "pesq")]}))
    zsl_model = (work / "exp/zsl/valid.loss.best.pth").resolve().stat().st_mtime_ns
    for name in (".done", "personalize_settings.yaml"):  # a few-shot step to do again
        (work / "exp/fsl" / name).unlink()
    assert personalize.main(personalize_args(personalized, **{"--fsl_config": listener})) == 0
    assert "personalize zsl: already trained" in caplog.text
    assert (work / "exp/zsl/valid.loss.best.pth").resolve().stat().st_mtime_ns == zsl_model
    assert distances("fsl") == ["snr", "pesq"] and distances("zsl") == ["snr", "cspec"]
    assert "pse_pesq=" in (work / "personalize.log").read_text()


def test_second_user_from_the_first_model_with_cm_and_dp(personalized, tmp_path, caplog):
    """--base, --method and the DP predictor reach the training config; a second user shares
    the data root."""
    import torch

    from espnet2_pse.tasks.snr_predictor import SNRPredictorTask

    predictor = tmp_path / "snr_predictor"
    SNRPredictorTask.main(cmd=[
        "--dry_run", "true", "--output_dir", str(predictor), "--predictor_conf", "hidden_size=8",
        "--predictor_conf", "num_layers=1",
        "--train_data_path_and_name_and_type", "x,speech,sound", "--train_shape_file", "x",
        "--valid_data_path_and_name_and_type", "x,speech,sound", "--valid_shape_file", "x",
    ])
    model, _ = SNRPredictorTask.build_model_from_file(predictor / "config.yaml", None, "cpu")
    torch.save(model.state_dict(), predictor / "model.pth")
    write_user_recordings(tmp_path / "bob", seed=3)
    args = personalize_args(
        personalized, **{"--noisy_dir": tmp_path / "bob", "--out": tmp_path / "bob.zip", "--max_epoch": 1,
                         "--segments_per_epoch": 2, "--base": personalized / "me.zip"})
    args = [a for a in args if a not in ("--clean_dir", str(personalized / "clean"))] + [
        "--user_name", "bob", "--data_root", str(personalized / "me_work/data"), "--work_dir", str(tmp_path / "work"),
        "--method", "contrastive_mixtures", "--dp_predictor_config", str(predictor / "config.yaml"),
        "--dp_predictor_model", str(predictor / "model.pth"),
    ]
    # The network comes from --base: a --config that also sets one is refused.
    assert personalize.main(args) == 1
    assert "the network comes from --base" in caplog.text
    without_config = [a for a in args if a not in ("--config", str(personalized / "tiny.yaml"))]
    assert personalize.main(without_config) == 0
    config = yaml.safe_load((tmp_path / "work/exp/zsl/config.yaml").read_text())
    assert config["separator_conf"] == TINY_NETWORK["separator_conf"]
    assert config["init_param"][0].startswith(str(tmp_path / "work/base/exp/fsl/"))
    assert config["ssl_objective"] == "contrastive_mixtures"
    assert config["ssl_objective_conf"]["dp_predictor"]["model_file"] == str(predictor / "model.pth")
    assert config["criterions"][0]["wrapper"] == "dp_fixed_order" and config["criterions"][0]["conf"]["segmental"]
    assert config["train_data_path_and_name_and_type"][0][0].endswith("speakers/bob/pretrain/spk1.scp")
    with zipfile.ZipFile(tmp_path / "bob.zip") as z:
        summary = yaml.safe_load(z.read("exp/zsl/personalize.yaml"))
    assert summary["few_shot"] is False and summary["selection"] == "valid loss on preval pseudo-mixtures"
    assert not (tmp_path / "work/exp/fsl").exists()


def test_teacher_targets_from_the_base_and_the_time_budget(personalized, tmp_path, caplog, monkeypatch):
    """With a base model, the zero-shot targets are its enhancement of the recordings (the
    spectral term scores against it alone with --spectral_reference teacher), and it ranks the
    recordings so that the training keeps the least noisy half of them; the budget stops
    training before an epoch that would not fit; the pack keeps the base's keys; --causal makes
    the base's network causal, and that personal zip exports for streaming."""
    import torch

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(personalize, "KEEP_CLEANEST_MIN_SECONDS", 0.0)  # the test's recordings are shorter
    work = tmp_path / "work"
    args = personalize_args(personalized, **{"--out": tmp_path / "carol.zip", "--base": personalized / "me.zip",
                                             "--max_epoch": 5, "--budget_minutes": 0.02, "--causal": None,
                                             "--teacher_weight": 1.0, "--spectral_reference": "teacher",
                                             "--teacher_weight_above": 0.5, "--teacher_split_hz": 3000,
                                             "--teacher_weight_noise": 0.8})
    args = [a for a in args if a not in ("--clean_dir", str(personalized / "clean"), "--config",
                                         str(personalized / "tiny.yaml"))]
    args += ["--user_name", "carol", "--data_root", str(personalized / "me_work/data"), "--work_dir", str(work)]
    assert personalize.main(args) == 0
    assert "time budget of 1 s used after 1 epoch(s)" in caplog.text
    cut = [r for r in caplog.records if r.levelno == logging.WARNING and "cap ended training" in r.getMessage()]
    assert cut and "personalize zsl: the 0.02-min cap ended training after epoch 1 of 5; the model may be weaker" \
        in cut[-1].getMessage()
    assert caplog.records[-1] is cut[-1]  # said last, after the pack is written
    config = yaml.safe_load((work / "exp/zsl/config.yaml").read_text())
    teacher = config["ssl_objective_conf"]["teacher"]
    assert teacher["model_file"].startswith(str(work / "base/exp/fsl/")) and config["ssl_objective_conf"]["teacher_weight"] == 1.0
    assert config["ssl_objective_conf"]["teacher_reference"] is True
    assert config["ssl_objective_conf"]["teacher_weight_above"] == 0.5
    assert config["ssl_objective_conf"]["teacher_split_hz"] == 3000
    assert config["ssl_objective_conf"]["teacher_weight_noise"] == 0.8
    # The base's outputs on the recordings were computed once, and the training reads them.
    outputs = (work / "teacher_outputs/teacher.scp").read_text().split()[::2]
    assert outputs == (personalized / "me_work/data/speakers/carol/pretrain/spk1.scp").read_text().split()[::2]
    assert [str(work / "teacher_outputs/teacher.scp"), "teacher_ref1", "sound"] in config["train_data_path_and_name_and_type"]
    kept = (work / "pretrain_cleanest_0.5/spk1.scp").read_text().split()[::2]
    assert 0 < len(kept) < len(outputs) and set(kept) < set(outputs)
    assert [str(work / "pretrain_cleanest_0.5/spk1.scp"), "speech_ref1", "sound"] in config["train_data_path_and_name_and_type"]
    assert f"zero-shot training on the {len(kept)} least noisy of {len(outputs)} segments" in caplog.text
    assert config["criterions"][1]["wrapper_conf"] == {"weight": 1.0, "reference": "teacher"}
    assert "pse_cspec=" in (work / "personalize.log").read_text()  # the term trained and was reported
    assert os.path.realpath(work / "exp/zsl/latest.pth").endswith("1epoch.pth")
    with zipfile.ZipFile(tmp_path / "carol.zip") as z:
        summary = yaml.safe_load(z.read("exp/zsl/personalize.yaml"))
        trained = torch.load(z.open(next(n for n in z.namelist() if n.endswith(".pth"))), map_location="cpu")
    assert summary["selection"] == "last epoch" and summary["teacher_weight"] == 1.0
    assert summary["spectral_reference"] == "teacher" and summary["teacher_weight_above"] == 0.5
    assert summary["keep_cleanest"] == personalize.DEFAULT_KEEP_CLEANEST == 0.5
    base = torch.load(teacher["model_file"], map_location="cpu")
    assert set(trained) == set(base)  # the frozen teacher never enters the saved state dict
    assert config["separator_conf"]["causal"] is True and config["separator_conf"]["norm_type"] == "cLN"
    assert summary["causal"] is True
    from espnet2_pse.bin.export import main as export

    assert export(["--model", str(tmp_path / "carol.zip"), "--out", str(tmp_path / "carol.onnx"), "--streaming"]) == 0
    assert "algorithmic latency 2.0 ms" in caplog.text and (tmp_path / "carol.onnx").is_file()


def test_speaker_conditioned_base_gets_the_users_voice_folded_in(personalized, tmp_path, caplog):
    """A pconv_tasnet base (the recipe's conditioned generalist) is conditioned on the teacher's
    centroid of the user's recordings and folded into the plain network that then trains."""
    import torch

    from espnet2_pse.inference.model_loading import resolve_model
    from test.spk.test_fold import write_pack_with_teacher

    caplog.set_level(logging.INFO)
    plain = resolve_model(personalized / "me.zip", tmp_path / "me")
    config = yaml.safe_load(plain.train_config.read_text())
    config.update(separator="pconv_tasnet", separator_conf={**config["separator_conf"], "embed_dim": 256})
    state = torch.load(plain.model_file, map_location="cpu")
    torch.manual_seed(0)
    for index in range(TINY_NETWORK["separator_conf"]["layer"]):
        state[f"separator.film.{index}.weight"] = 0.1 * torch.randn(2 * 16, 256)
        state[f"separator.film.{index}.bias"] = torch.zeros(2 * 16)
    base = tmp_path / "conditioned"
    write_pack_with_teacher(base, config, state)
    work = tmp_path / "work"
    args = personalize_args(personalized, **{"--out": tmp_path / "erin.zip", "--base": base, "--max_epoch": 1,
                                             "--segments_per_epoch": 2, "--keep_cleanest": 1})
    args = [a for a in args if a not in ("--clean_dir", str(personalized / "clean"), "--config",
                                         str(personalized / "tiny.yaml"))]
    args += ["--user_name", "erin", "--data_root", str(personalized / "me_work/data"), "--work_dir", str(work)]
    assert personalize.main(args) == 0
    assert "conditioned on the recordings' speaker centroid" in caplog.text
    folded = work / "base_folded"
    assert np.linalg.norm(np.load(folded / "speaker_embedding.npy")) == pytest.approx(1.0, abs=1e-5)
    zsl = yaml.safe_load((work / "exp/zsl/config.yaml").read_text())
    assert zsl["separator"] == "conv_tasnet_skip" and "embed_dim" not in zsl["separator_conf"]
    assert zsl["init_param"][0].startswith(str(folded / "model.pth"))
    assert zsl["ssl_objective_conf"]["teacher"]["model_file"] == str(folded / "model.pth")
    with zipfile.ZipFile(tmp_path / "erin.zip") as z:
        trained = torch.load(z.open(next(n for n in z.namelist() if n.endswith(".pth"))), map_location="cpu")
    assert not any(".film." in key for key in trained)
    caplog.clear()  # a rerun in the same work dir reuses the fold instead of embedding again
    assert personalize.main(args) == 0
    assert "reusing its fold" in caplog.text and "speaker centroid" not in caplog.text


def test_clean_speech_alone_fine_tunes_the_base(personalized, tmp_path):
    """Without noisy recordings (the Python API with noisy_dir None) the zero-shot step is
    skipped: the few-shot step trains on all of the 10 s of clean speech (nothing is held out
    under 30 s), straight from the base, for as many epochs as make 24 batches a second of it,
    and the progress reports data, fsl, pack and done."""
    from espnet2_pse import api

    events, work = [], tmp_path / "work"
    enhancer = api.personalize(
        None, tmp_path / "dave.zip", clean_dir=personalized / "clean", progress=events.append, quiet=True,
        base=personalized / "me.zip", user_name="dave", work_dir=work, data_root=personalized / "me_work/data",
        data_opts=TINY_DATA_OPTS, chunk_seconds=0.5, segments_per_epoch=20, fsl_lr=1e-3)
    assert [e["step"] for e in events if "epoch" not in e] == ["data", "fsl", "pack", "done"]
    # 10 s: 240 batches; an epoch cuts 20 segments of 5 s into 19 crops of 0.5 s each: 47 batches
    assert [(e["epoch"], e["max_epoch"]) for e in events if "epoch" in e] == [(k, 5) for k in range(1, 6)]
    assert not (work / "exp/zsl").exists()
    fsl = yaml.safe_load((work / "exp/fsl/config.yaml").read_text())
    assert fsl["init_param"][0].startswith(str(work / "base/exp/fsl/"))  # the base's weights
    train_dir = personalized / "me_work/data/speakers/dave/fsl_train"
    assert fsl["train_data_path_and_name_and_type"][0][0] == str(train_dir / "spk1.scp")
    assert len((train_dir / "spk1.scp").read_text().splitlines()) == 2  # both clean files
    with zipfile.ZipFile(tmp_path / "dave.zip") as z:
        summary = yaml.safe_load(z.read("exp/fsl/personalize.yaml"))
    assert summary["zero_shot"] is False and summary["few_shot"] is True and "teacher_weight" not in summary
    gain = mean_improvement(lambda x: enhancer(x, 16000), held_out_mixtures(personalized / "me_work/data"))
    assert gain > 3.0


def test_same_inputs_seed_and_threads_give_the_same_model(personalized, tmp_path):
    """The default budget is counted in epochs, so two runs on the same recordings with the same
    seed and thread count write identical weights, however long each took."""
    import torch

    weights = []
    for run in ("a", "b"):
        args = personalize_args(personalized, **{"--out": tmp_path / f"{run}.zip", "--clean_dir": None,
                                                 "--data_root": personalized / "me_work/data",
                                                 "--work_dir": tmp_path / f"work_{run}", "--user_name": "dave"})
        args.remove("--clean_dir")
        assert personalize.main(args) == 0
        with zipfile.ZipFile(tmp_path / f"{run}.zip") as z:
            weights.append(torch.load(z.open(next(n for n in z.namelist() if n.endswith(".pth"))), map_location="cpu"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_both_steps_inject_talkers_and_the_full_log_stays_in_the_work_dir(personalized):
    """By default both trainings add other voices (the data root's generalist speakers) to the
    injection; ESPnet's trainer log goes to <work_dir>/personalize.log."""
    work = personalized / "me_work"
    for step in ("zsl", "fsl"):
        conf = yaml.safe_load((work / f"exp/{step}/config.yaml").read_text())["ssl_objective_conf"]
        assert conf["talker_scp"] == str(work / "data/generalist/train/wav.scp"), step
        assert conf["talker_prob"] == personalize.DEFAULT_TALKER_PROB and conf["talker_tir_range"] == [0.0, 10.0]
    log = (work / "personalize.log").read_text()
    assert "1epoch results:" in log and "personalize zsl: epoch 1, elapsed" in log
    assert "interfering talker bank:" in log  # the bank was loaded and used


def test_terminal_shows_progress_and_errors_only():
    def record(name, level):
        return logging.LogRecord(name, level, __file__, 1, "message", None, None)

    shown = personalize_progress._terminal_record
    assert shown(record("espnet2_pse.personalize", logging.INFO))
    assert not shown(record("root", logging.INFO)) and not shown(record("espnet2.train.trainer", logging.WARNING))
    assert shown(record("espnet2_pse.ssl.noise_bank", logging.WARNING)) and shown(record("root", logging.ERROR))
