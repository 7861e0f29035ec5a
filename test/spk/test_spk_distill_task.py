"""SpkDistillTask end to end: 1 epoch through main(), the saved state, reloading the student."""

import numpy as np
import pytest
import torch

from test.spk.conftest import load_yaml


@pytest.fixture(scope="module")
def trained(spk_corpus, teacher_files, tmp_path_factory):
    from espnet2_pse.bin.spk_distill_train import main

    out = tmp_path_factory.mktemp("distill") / "exp"
    data = spk_corpus["dir"]
    args = ["--output_dir", out, "--ngpu", 0, "--num_workers", 0, "--seed", 0,
            "--use_tensorboard", "false", "--use_matplotlib", "false",
            "--max_epoch", 1, "--batch_type", "unsorted", "--batch_size", 4,
            "--optim", "adam", "--optim_conf", "lr=0.001",
            "--teacher_train_config", teacher_files["config"],
            "--teacher_model_file", teacher_files["model"],
            "--noise_scp", spk_corpus["noise_scp"], "--teacher_crop_s", 1.0,
            "--model_conf", "student_min_s=0.5", "--model_conf", "student_max_s=1.0",
            "--kd_loss_conf", "temperature=0.1",
            "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/utt2spk,spk_labels,text"]
    main(cmd=[str(a) for a in args])
    return out


def test_one_epoch_writes_checkpoint_without_teacher(trained):
    from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder

    state = torch.load(trained / "1epoch.pth", map_location="cpu")
    # Exactly the student's tensors: nothing of the teacher is saved.
    assert set(state) == {"student." + k for k in TinySpeakerEncoder().state_dict()}
    config = load_yaml(trained / "config.yaml")
    assert config["student"] == "tiny" and config["kd_loss"] == "infonce"


def test_training_reported_finite_losses(trained):
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    checkpoint = torch.load(trained / "checkpoint.pth", map_location="cpu", weights_only=False)
    reporter.load_state_dict(checkpoint["reporter"])
    for mode in ("train", "valid"):
        loss = reporter.get_value(mode, "loss", epoch=1)
        # 12 utterances in batches of 4: InfoNCE starts near log(4).
        assert np.isfinite(loss) and 0 < loss < 3 * np.log(4), (mode, loss)


def test_student_reloads_alone(trained):
    from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    student = SpkDistillTask.build_student_from_file(
        trained / "config.yaml", trained / "1epoch.pth"
    )
    assert isinstance(student, TinySpeakerEncoder) and not student.training
    saved = torch.load(trained / "1epoch.pth", map_location="cpu")
    for name, value in student.state_dict().items():
        assert torch.equal(value, saved["student." + name]), name
    emb = student(torch.randn(2, 16000))
    assert emb.shape == (2, 192)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_missing_teacher_file_is_reported(spk_corpus, tmp_path):
    from espnet2_pse.bin.spk_distill_train import main

    data = spk_corpus["dir"]
    with pytest.raises(FileNotFoundError, match="teacher_model_file"):
        main(cmd=["--output_dir", str(tmp_path / "exp"),
                  "--teacher_model_file", str(tmp_path / "missing.pth"),
                  "--train_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                  "--valid_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                  "--train_shape_file", str(data / "wav.scp"),
                  "--valid_shape_file", str(data / "wav.scp")])


def test_spk_eer_scores_the_trained_student(trained, spk_corpus, tmp_path):
    from espnet2_pse.bin.spk_eer import main as spk_eer

    result = spk_eer(["--data_dir", str(spk_corpus["dir"]), "--model_type", "student",
                      "--train_config", str(trained / "config.yaml"),
                      "--model_file", str(trained / "1epoch.pth"),
                      "--max_trials_per_class", "6", "--max_seconds", "1.0",
                      "--output_file", str(tmp_path / "eer.yaml")])
    assert load_yaml(tmp_path / "eer.yaml") == result
    assert result["model_type"] == "student" and result["n_target"] == 6
    assert 0.0 <= result["eer"] <= 1.0


def test_conf_of_another_kd_loss_is_reported(spk_corpus, teacher_files, tmp_path):
    from espnet2_pse.bin.spk_distill_train import main

    data = spk_corpus["dir"]
    with pytest.raises(ValueError, match="kd_loss_conf for 'cosine'.*temperature"):
        main(cmd=["--output_dir", str(tmp_path / "exp"), "--kd_loss", "cosine",
                  "--kd_loss_conf", "temperature=0.1",
                  "--teacher_train_config", str(teacher_files["config"]),
                  "--teacher_model_file", str(teacher_files["model"]),
                  "--train_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                  "--valid_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                  "--train_shape_file", str(data / "wav.scp"),
                  "--valid_shape_file", str(data / "wav.scp")])


def test_real_voice_config_trains_with_speed_perturbation(spk_corpus, tmp_path):
    """The debian_real student config (YAML list of speed factors, the offline GE2E teacher)."""
    from pathlib import Path

    from espnet2_pse.bin.spk_distill_train import main

    conf = Path(__file__).resolve().parents[2] / "egs2/pse_ssl/pse1/conf/tuning/train_spk_student_real.yaml"
    out, data = tmp_path / "exp", spk_corpus["dir"]
    args = ["--config", conf, "--output_dir", out, "--ngpu", 0, "--num_workers", 0,
            "--use_tensorboard", "false", "--use_matplotlib", "false",
            "--max_epoch", 1, "--num_iters_per_epoch", 2, "--batch_size", 4, "--valid_batch_size", 4,
            "--teacher_model_tag", "resemblyzer", "--noise_scp", spk_corpus["noise_scp"],
            "--teacher_crop_s", 1.0, "--model_conf", "student_max_s=1.0",
            "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp"]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/utt2spk,spk_labels,text"]
    main(cmd=[str(a) for a in args])
    config = load_yaml(out / "config.yaml")
    assert config["speed_perturb_factors"] == [0.8, 0.9, 1.0, 1.1, 1.2]
    assert config["student_conf"] == {"embed_dim": 256, "n_mels": 64} and config["model_conf"]["noise_prob"] == 0.5
    assert (out / "1epoch.pth").is_file()
