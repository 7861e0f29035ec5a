"""From-scratch baseline: AAM-softmax loss, class ids from spk2utt, training with no teacher."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from espnet2_pse.spk.aam_loss import AAMSoftmaxLoss, InfoNCEAAMLoss
from espnet2_pse.spk.espnet_model import ESPnetSpkDistillModel
from espnet2_pse.spk.kd_losses import InfoNCELoss
from espnet2_pse.spk.preprocessor import SpkDistillPreprocessor, speaker_index
from espnet2_pse.spk.teacher import FrozenTeacher
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder
from test.conftest import FS, synth_voice
from test.spk.conftest import SPEAKER_F0, load_yaml

# 3 embeddings (D = 2) and 3 class vectors, none of unit norm: the loss normalises both.
EMB = np.array([[2.0, 0.5], [-1.0, 1.0], [0.3, -0.8]])
CLASSES = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
LABELS = [0, 2, 1]


def make_loss(margin: float, scale: float, classes=CLASSES) -> AAMSoftmaxLoss:
    loss = AAMSoftmaxLoss(
        num_speakers=len(classes), embed_dim=classes.shape[1], margin=margin, scale=scale
    )
    with torch.no_grad():
        loss.weight.copy_(torch.tensor(classes))
    return loss.double()


def manual_aam(emb, classes, labels, margin, scale):
    """Mean over rows of -log softmax, true class at angle theta + m, from the angles."""
    total = 0.0
    for e, y in zip(emb, labels):
        angles = [math.acos(np.dot(e, w) / (np.linalg.norm(e) * np.linalg.norm(w)))
                  for w in classes]
        logits = [scale * math.cos(a + (margin if j == y else 0.0)) for j, a in enumerate(angles)]
        total -= logits[y] - math.log(sum(math.exp(v) for v in logits))
    return total / len(emb)


def test_aam_equals_hand_computation_with_margin():
    # Every true-class angle + m stays below pi here (the angle-sum regime).
    loss = make_loss(0.3, 10.0)(torch.tensor(EMB), None, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(manual_aam(EMB, CLASSES, LABELS, 0.3, 10.0), rel=1e-6)
    # The margin only makes the true class harder.
    assert loss.item() > manual_aam(EMB, CLASSES, LABELS, 0.0, 10.0) + 0.1


def test_zero_margin_is_scaled_cosine_cross_entropy():
    emb, classes = torch.tensor(EMB), torch.tensor(CLASSES)
    cos = F.cosine_similarity(emb[:, None, :], classes[None, :, :], dim=-1)
    expected = F.cross_entropy(7.0 * cos, torch.tensor(LABELS))
    loss = make_loss(0.0, 7.0)(emb, None, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_true_class_penalty_keeps_growing_past_pi_minus_margin():
    """The true class's angle sweeps 0..pi, the other class stays at 90 degrees: the loss
    must rise continuously all the way."""
    margin = 0.5
    loss_fn = make_loss(margin, 5.0, classes=np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    angles = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    emb = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros_like(angles)], dim=-1)
    values = torch.stack([loss_fn(e[None], None, torch.tensor([0])) for e in emb])
    steps = values.diff()
    assert (steps > 0).all(), "the loss must grow with the true-class angle everywhere"
    assert steps.abs().max() < 0.02, "no jump where theta + m reaches pi"
    beyond = angles > math.pi - margin
    assert beyond.any() and (~beyond).any()


def test_missing_or_out_of_range_labels_name_the_option():
    loss = make_loss(0.2, 30.0)
    emb = torch.tensor(EMB)
    with pytest.raises(ValueError, match="none.*--spk2utt"):
        loss(emb, None, None)
    with pytest.raises(ValueError, match=r"\[0, 3\).*\[0, 7\].*--spk2utt"):
        loss(emb, None, torch.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match=r"\[-1, 1\].*--spk2utt"):
        loss(emb, None, torch.tensor([-1, 0, 1]))
    with pytest.raises(ValueError, match="embed_dim"):
        loss(torch.randn(3, 5, dtype=torch.float64), None, torch.tensor(LABELS))
    with pytest.raises(ValueError, match="num_speakers.*--spk2utt"):
        AAMSoftmaxLoss()
    with pytest.raises(ValueError, match="margin"):
        AAMSoftmaxLoss(num_speakers=2, margin=-0.1)
    with pytest.raises(ValueError, match="scale"):
        AAMSoftmaxLoss(num_speakers=2, scale=0.0)


def test_aam_decreases_when_training_a_student_on_a_toy_set():
    """Four toy voices, two rows each; student and class vectors train together."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    f0s = [100.0, 160.0, 230.0, 320.0] * 2
    audio = torch.tensor(np.stack([synth_voice(rng, 1.0, f0) for f0 in f0s]))
    labels = torch.arange(4).repeat(2)
    student = TinySpeakerEncoder(channels=32, attention_channels=16)
    loss_fn = AAMSoftmaxLoss(num_speakers=4, embed_dim=student.output_size())
    params = list(student.parameters()) + list(loss_fn.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    losses = []
    for _ in range(12):
        loss = loss_fn(student(audio), None, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_model_never_runs_the_teacher_for_aam():
    def no_teacher():
        raise AssertionError("the teacher must not be loaded for aamsoftmax")

    torch.manual_seed(0)
    model = ESPnetSpkDistillModel(
        TinySpeakerEncoder(channels=32, attention_channels=16),
        AAMSoftmaxLoss(num_speakers=3), FrozenTeacher(loader=no_teacher), sample_rate=FS,
        student_min_s=0.5, student_max_s=1.0,
    )
    loss, stats, weight = model(torch.randn(2, FS), spk_labels=torch.tensor([[0], [2]]))
    assert set(stats) == {"loss"} and torch.isfinite(loss) and weight.item() == 2
    loss.backward()
    assert model.kd_loss.weight.grad is not None and model.kd_loss.weight.grad.abs().sum() > 0
    # Also without any teacher object at all.
    model.teacher = None
    assert torch.isfinite(model(torch.randn(2, FS), spk_labels=torch.tensor([[1], [0]]))[0])


def test_preprocessor_maps_speakers_of_spk2utt_to_sorted_class_ids(tmp_path):
    spk2utt = tmp_path / "spk2utt"
    spk2utt.write_text("zed z1 z2\namy a1\nbob b1 b2\n")
    assert speaker_index(str(spk2utt)) == {"amy": 0, "bob": 1, "zed": 2}
    pre = SpkDistillPreprocessor(True, crop_s=0.5, spk2utt=str(spk2utt))
    speech = np.ones(FS, dtype=np.float32)
    assert pre("z1", {"speech": speech, "spk_labels": "zed"})["spk_labels"].tolist() == [2]
    assert pre("a1", {"speech": speech, "spk_labels": "amy"})["spk_labels"].tolist() == [0]
    with pytest.raises(KeyError, match="utt5.*'eve'.*spk2utt.*" + str(spk2utt)):
        pre("utt5", {"speech": speech, "spk_labels": "eve"})
    (tmp_path / "empty").write_text("")
    with pytest.raises(ValueError, match="empty lists no speakers"):
        speaker_index(str(tmp_path / "empty"))


def test_speed_factors_multiply_the_classifier_classes(tmp_path):
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    spk2utt = tmp_path / "spk2utt"
    spk2utt.write_text("amy a1\nbob b1\nzed z1\n")
    student = TinySpeakerEncoder(embed_dim=8, channels=16, attention_channels=8)
    conf = SpkDistillTask._complete_head_conf(AAMSoftmaxLoss, {}, student, str(spk2utt), 3)
    assert conf == {"embed_dim": 8, "num_speakers": 9}
    with pytest.raises(ValueError, match="num_speakers=5.*9 classes"):
        SpkDistillTask._complete_head_conf(AAMSoftmaxLoss, {"num_speakers": 5}, student, str(spk2utt), 3)


def test_infonce_aam_is_the_weighted_sum_of_its_two_terms():
    emb, labels = torch.tensor(EMB), torch.tensor(LABELS)
    teacher = torch.tensor([[1.0, 1.0], [-1.0, 0.2], [0.1, -1.0]], dtype=torch.float64)
    hybrid = InfoNCEAAMLoss(num_speakers=3, embed_dim=2, margin=0.3, scale=10.0,
                            temperature=0.1, align_weight=1.0, aam_weight=0.25).double()
    with torch.no_grad():
        hybrid.aam.weight.copy_(torch.tensor(CLASSES))
    infonce = InfoNCELoss(temperature=0.1, align_weight=1.0)(emb, teacher, labels)
    expected = infonce.item() + 0.25 * manual_aam(EMB, CLASSES, LABELS, 0.3, 10.0)
    assert hybrid(emb, teacher, labels).item() == pytest.approx(expected, rel=1e-6)
    assert InfoNCEAAMLoss.uses_teacher
    with pytest.raises(ValueError, match="infonce_aam aam_weight must be > 0.*kd_loss infonce"):
        InfoNCEAAMLoss(num_speakers=3, aam_weight=0.0)
    with pytest.raises(ValueError, match="class ids must lie in"):
        hybrid(emb, teacher, torch.tensor([0, 3, 1]))


def test_infonce_aam_trains_student_and_head_against_the_teacher(tmp_path):
    """With the offline GE2E teacher: one step moves the student and the class head."""
    from espnet2_pse.spk.teacher import load_teacher
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    spk2utt = tmp_path / "spk2utt"
    spk2utt.write_text("amy a1\nbob b1\n")
    torch.manual_seed(0)
    student = TinySpeakerEncoder(embed_dim=256, channels=32, attention_channels=16)
    conf = SpkDistillTask._complete_head_conf(InfoNCEAAMLoss, {}, student, str(spk2utt), 3)
    assert conf == {"embed_dim": 256, "num_speakers": 6}
    model = ESPnetSpkDistillModel(student, InfoNCEAAMLoss(**conf),
                                  FrozenTeacher(load_teacher(model_tag="resemblyzer")),
                                  sample_rate=FS, student_min_s=0.5, student_max_s=1.0)
    rng = np.random.default_rng(0)
    speech = torch.tensor(np.stack([synth_voice(rng, 1.5, f0) for f0 in (110.0, 240.0)]))
    loss, stats, _ = model(speech.float(), spk_labels=torch.tensor([[0], [5]]))
    loss.backward()
    assert torch.isfinite(loss) and "cos_pos" in stats  # the teacher ran
    assert model.kd_loss.aam.weight.grad.abs().sum() > 0
    assert student.projection.weight.grad.abs().sum() > 0


def base_args(out, data, *extra):
    args = ["--output_dir", out, "--ngpu", 0, "--num_workers", 0, "--seed", 0,
            "--use_tensorboard", "false", "--use_matplotlib", "false",
            "--max_epoch", 1, "--batch_type", "unsorted", "--batch_size", 4,
            "--optim", "adam", "--optim_conf", "lr=0.001", "--teacher_crop_s", 1.0,
            "--model_conf", "student_min_s=0.5", "--model_conf", "student_max_s=1.0",
            "--train_shape_file", data / "wav.scp", "--valid_shape_file", data / "wav.scp",
            *extra]
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
                 f"--{split}_data_path_and_name_and_type", f"{data}/utt2spk,spk_labels,text"]
    return [str(a) for a in args]


@pytest.fixture(scope="module")
def trained_aam(spk_corpus, tmp_path_factory):
    """1 epoch of kd_loss aamsoftmax with no teacher at all."""
    from espnet2_pse.bin.spk_distill_train import main

    out = tmp_path_factory.mktemp("aam") / "exp"
    data = spk_corpus["dir"]
    main(cmd=base_args(out, data, "--kd_loss", "aamsoftmax", "--kd_loss_conf", "margin=0.2",
                       "--kd_loss_conf", "scale=30", "--spk2utt", data / "spk2utt",
                       "--noise_scp", spk_corpus["noise_scp"]))
    return out


def test_aam_training_saves_student_and_class_head(trained_aam):
    state = torch.load(trained_aam / "1epoch.pth", map_location="cpu")
    student_keys = {"student." + k for k in TinySpeakerEncoder().state_dict()}
    assert set(state) == student_keys | {"kd_loss.weight"}
    assert state["kd_loss.weight"].shape == (len(SPEAKER_F0), 192)
    config = load_yaml(trained_aam / "config.yaml")
    assert config["kd_loss"] == "aamsoftmax" and config["teacher_model_file"] is None
    # The head's size is in the config: reloading does not need the spk2utt file.
    assert config["kd_loss_conf"] == dict(margin=0.2, scale=30, embed_dim=192,
                                          num_speakers=len(SPEAKER_F0))


def test_aam_training_reported_finite_losses(trained_aam):
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    checkpoint = torch.load(trained_aam / "checkpoint.pth", map_location="cpu",
                            weights_only=False)
    reporter.load_state_dict(checkpoint["reporter"])
    for mode in ("train", "valid"):
        loss = reporter.get_value(mode, "loss", epoch=1)
        # 4 classes at scale 30: a random head starts within a few times 30 * (1 + cos m).
        assert np.isfinite(loss) and 0 < loss < 100, (mode, loss)


def test_aam_student_reloads_alone_without_spk2utt(trained_aam, tmp_path):
    from espnet2_pse.tasks.spk_distill import SpkDistillTask

    config = load_yaml(trained_aam / "config.yaml")
    config["spk2utt"] = str(tmp_path / "gone" / "spk2utt")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    student = SpkDistillTask.build_student_from_file(
        tmp_path / "config.yaml", trained_aam / "1epoch.pth"
    )
    assert isinstance(student, TinySpeakerEncoder) and not student.training
    saved = torch.load(trained_aam / "1epoch.pth", map_location="cpu")
    for name, value in student.state_dict().items():
        assert torch.equal(value, saved["student." + name]), name
    emb = student(torch.randn(2, FS))
    assert emb.shape == (2, 192)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_spk_eer_scores_the_aam_student(trained_aam, spk_corpus):
    from espnet2_pse.bin.spk_eer import main as spk_eer

    result = spk_eer(["--data_dir", str(spk_corpus["dir"]), "--model_type", "student",
                      "--train_config", str(trained_aam / "config.yaml"),
                      "--model_file", str(trained_aam / "1epoch.pth"),
                      "--max_trials_per_class", "6", "--max_seconds", "1.0"])
    assert result["n_target"] == 6 and 0.0 <= result["eer"] <= 1.0


def test_teacher_requirement_depends_on_the_loss(spk_corpus, tmp_path):
    from espnet2_pse.bin.spk_distill_train import main

    data = spk_corpus["dir"]
    # The KD losses still refuse to start without a teacher.
    with pytest.raises(ValueError, match="kd_loss infonce needs a teacher"):
        main(cmd=base_args(tmp_path / "a", data))
    with pytest.raises(FileNotFoundError, match="--spk2utt .*missing"):
        main(cmd=base_args(tmp_path / "b", data, "--kd_loss", "aamsoftmax",
                           "--spk2utt", tmp_path / "missing"))
    with pytest.raises(ValueError, match="num_speakers.*--spk2utt"):
        main(cmd=base_args(tmp_path / "c", data, "--kd_loss", "aamsoftmax"))
    with pytest.raises(ValueError, match="num_speakers=2 is smaller than the 4 speakers"):
        main(cmd=base_args(tmp_path / "d", data, "--kd_loss", "aamsoftmax",
                           "--kd_loss_conf", "num_speakers=2", "--spk2utt", data / "spk2utt"))
