"""ESPnetSpkDistillModel and its preprocessor: frozen teacher, student views, fixed validation."""

import numpy as np
import pytest
import torch

from espnet2_pse.data.mixing import snr_db
from espnet2_pse.spk.espnet_model import ESPnetSpkDistillModel
from espnet2_pse.spk.kd_losses import InfoNCELoss
from espnet2_pse.spk.preprocessor import SpkDistillPreprocessor, speaker_id
from espnet2_pse.spk.teacher import FrozenTeacher, load_teacher
from espnet2_pse.spk.tiny_encoder import TinySpeakerEncoder

FS = 16000


@pytest.fixture
def model(teacher_files):
    torch.manual_seed(0)
    teacher = FrozenTeacher(load_teacher(teacher_files["config"], teacher_files["model"]))
    return ESPnetSpkDistillModel(
        TinySpeakerEncoder(channels=32, attention_channels=16), InfoNCELoss(), teacher,
        sample_rate=FS, student_min_s=0.5, student_max_s=1.0, snr_low=0.0, snr_high=10.0,
    )


def test_teacher_is_frozen_and_outside_the_state(model):
    teacher = model.teacher.model
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    speech = torch.randn(4, FS)
    loss, stats, weight = model(speech, torch.full((4,), FS), noise=torch.randn(4, FS))
    optimizer.zero_grad()
    loss.sum().backward()
    optimizer.step()

    assert weight.item() == 4 and set(stats) == {"loss", "cos_pos", "acc"}
    assert not teacher.training, "model.train() must not switch the teacher to train mode"
    assert all(not p.requires_grad for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), f"teacher tensor {name} changed"
    student_ids = {id(p) for p in model.parameters()}
    assert not student_ids & {id(p) for p in teacher.parameters()}
    assert all(k.startswith("student.") for k in model.state_dict())
    # The student did learn something from that step.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())


def test_student_view_is_a_short_noisy_window_of_the_same_utterance(model):
    # A ramp makes every sample unique, so the window's position can be read back.
    speech = torch.arange(2 * FS, dtype=torch.float32).repeat(3, 1) / (2 * FS) + 0.5
    noise = torch.randn(3, 2 * FS)
    lengths = torch.full((3,), 2 * FS)
    model.noise_prob = 0.0
    clean = model.student_view(speech, lengths, generator=torch.Generator().manual_seed(1))
    assert 0.5 * FS <= clean.size(1) <= 1.0 * FS
    offsets = (clean[:, 0] - 0.5) * 2 * FS
    assert torch.allclose(clean, speech.gather(
        1, offsets.round().long()[:, None] + torch.arange(clean.size(1))[None]), atol=1e-6)

    model.noise_prob = 1.0
    noisy = model.student_view(speech, lengths, noise, generator=torch.Generator().manual_seed(1))
    added = noisy - clean  # same generator: same length and offsets
    snr = snr_db(clean, added)
    assert ((snr > -0.01) & (snr < 10.01)).all(), snr
    assert not torch.allclose(added, torch.zeros_like(added))


def test_validation_loss_is_reproducible(model):
    model.eval()
    speech, noise = torch.randn(4, FS), torch.randn(4, FS)
    with torch.no_grad():
        first = model(speech, torch.full((4,), FS), noise=noise)[0]
        second = model(speech, torch.full((4,), FS), noise=noise)[0]
    assert torch.equal(first, second)


def test_model_without_teacher_says_so():
    model = ESPnetSpkDistillModel(TinySpeakerEncoder(), InfoNCELoss(), None, sample_rate=FS)
    with pytest.raises(RuntimeError, match="without a teacher"):
        model(torch.randn(2, FS))


def test_teacher_loading_errors_name_the_file(tmp_path, teacher_files):
    with pytest.raises(FileNotFoundError, match="teacher_model_file"):
        load_teacher(teacher_files["config"], tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="no teacher given"):
        load_teacher()
    torch.save({"encoder.conv.weight": torch.zeros(1)}, tmp_path / "other.pth")  # wrong shape
    with pytest.raises(RuntimeError, match="other.pth does not match"):
        load_teacher(teacher_files["config"], tmp_path / "other.pth")
    torch.save({}, tmp_path / "empty.pth")  # tensors missing
    with pytest.raises(RuntimeError, match="empty.pth does not match.*missing"):
        load_teacher(teacher_files["config"], tmp_path / "empty.pth")


def test_preprocessor_crops_attaches_noise_and_labels(spk_corpus):
    noise_scp = spk_corpus["noise_scp"]
    speech = np.random.default_rng(0).standard_normal(FS // 2).astype(np.float32)
    train = SpkDistillPreprocessor(True, crop_s=1.0, noise_scp=str(noise_scp))
    out = train("spkA_u0", {"speech": speech, "spk_labels": "spkA"})
    assert out["speech"].shape == (FS,) and out["noise"].shape == (FS,)
    assert out["spk_labels"].tolist() == [speaker_id("spkA")]
    # A 0.5 s utterance is repeated to fill the 1 s crop.
    assert np.isin(out["speech"], speech).all()

    valid = SpkDistillPreprocessor(False, crop_s=1.0, noise_scp=str(noise_scp))
    long = np.random.default_rng(1).standard_normal(3 * FS).astype(np.float32)
    a, b = valid("u1", {"speech": long}), valid("u1", {"speech": long})
    assert np.array_equal(a["speech"], b["speech"]) and np.array_equal(a["noise"], b["noise"])


class _CropOffsets(torch.utils.data.Dataset):
    """Where the training preprocessor crops each of 8 items of a ramp (its first sample)."""

    def __init__(self):
        self.pre = SpkDistillPreprocessor(True, crop_s=0.01)
        self.ramp = np.arange(FS, dtype=np.float32)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return int(self.pre(f"u{i}", {"speech": self.ramp})["speech"][0])


def _epochs_of_crops(seed: int, workers: int, epochs: int = 2):
    torch.manual_seed(seed)  # as ESPnet seeds a run
    loader = torch.utils.data.DataLoader(_CropOffsets(), batch_size=2, num_workers=workers)
    return [[int(x) for batch in loader for x in batch] for _ in range(epochs)]


def test_training_crops_are_new_each_epoch_and_worker_and_reproducible():
    # In the data loader's worker processes (fresh each epoch) and in the main process.
    for workers in (2, 0):
        first, second = _epochs_of_crops(0, workers)
        assert first != second, f"{workers} workers: the second epoch repeated the first one's crops"
        assert len(set(first)) == len(first), f"{workers} workers: two items got the same crop"
        assert _epochs_of_crops(0, workers) == [first, second]  # same seed, same crops
        assert _epochs_of_crops(1, workers)[0] != first


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * FS / len(x)


def test_speed_perturbation_makes_new_voices_and_spares_validation(tmp_path):
    tone = np.sin(2 * np.pi * 200.0 * np.arange(3 * FS) / FS).astype(np.float32)
    train = SpkDistillPreprocessor(True, crop_s=1.0, speed_factors=(1.1, 1.0, 0.9))
    seen = {}
    for _ in range(40):
        out = train("spkA_u0", {"speech": tone, "spk_labels": "spkA"})
        seen.setdefault(out["spk_labels"].item(), set()).add(round(dominant_hz(out["speech"]) / 10) * 10)
    # Each factor is its own voice: three labels, each with the pitch of its factor only.
    assert sorted(seen.values(), key=min) == [{180}, {200}, {220}]
    assert speaker_id("spkA") in seen and seen[speaker_id("spkA")] == {200}

    valid = SpkDistillPreprocessor(False, crop_s=1.0, speed_factors=(0.9, 1.0, 1.1))
    for uid in ("u1", "u2", "u3"):
        out = valid(uid, {"speech": tone, "spk_labels": "spkA"})
        assert out["spk_labels"].tolist() == [speaker_id("spkA")]
        assert dominant_hz(out["speech"]) == pytest.approx(200.0, abs=2.0)

    spk2utt = tmp_path / "spk2utt"
    spk2utt.write_text("amy a1\nbob b1\n")
    classes = SpkDistillPreprocessor(True, crop_s=1.0, spk2utt=str(spk2utt), speed_factors=(0.9, 1.0, 1.1))
    labels = {classes("b1", {"speech": tone, "spk_labels": "bob"})["spk_labels"].item() for _ in range(40)}
    assert labels == {1, 3, 5}  # bob (index 1) at factors 1.0, 0.9, 1.1: k * 2 + 1

    for bad in ((0.9, 1.1), (1.0, 1.0), (1.0, -0.5), ()):
        with pytest.raises(ValueError, match="speed_factors"):
            SpkDistillPreprocessor(True, crop_s=1.0, speed_factors=bad)


def test_preprocessor_rejects_bad_input_naming_it(tmp_path):
    pre = SpkDistillPreprocessor(True, crop_s=1.0)
    with pytest.raises(ValueError, match="utt7.*mono"):
        pre("utt7", {"speech": np.zeros((FS, 2), dtype=np.float32)})
    with pytest.raises(ValueError, match="utt8.*NaN"):
        pre("utt8", {"speech": np.full(FS, np.nan, dtype=np.float32)})
    (tmp_path / "noise.scp").write_text(f"n1 {tmp_path / 'missing.wav'}\n")
    noisy = SpkDistillPreprocessor(True, crop_s=1.0, noise_scp=str(tmp_path / "noise.scp"))
    with pytest.raises(ValueError, match="missing.wav"):
        noisy("utt9", {"speech": np.ones(FS, dtype=np.float32)})


def test_enhanced_like_views_remove_part_of_the_noise_and_distort_the_speech():
    """The perturbed oracle Wiener mask behaves like a mask-based enhancer's output."""
    rng = np.random.default_rng(0)
    t = np.arange(2 * FS) / FS
    clean = torch.from_numpy(np.stack([np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(3 * t))
                                       for f in (150.0, 220.0, 300.0, 410.0)]).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(clean.shape).astype(np.float32)) * 0.1
    out = ESPnetSpkDistillModel.enhanced_like(clean, noise, torch.Generator().manual_seed(0))
    again = ESPnetSpkDistillModel.enhanced_like(clean, noise, torch.Generator().manual_seed(0))

    assert out.shape == clean.shape and torch.equal(out, again)
    before = snr_db(clean, noise)
    after = snr_db(clean, out - clean)
    assert (after > before + 3.0).all(), (before, after)  # residual noise, less of it
    assert (after < 40.0).all()  # but not the clean speech: errors and a gain floor remain


def test_enhanced_prob_switches_the_view_type(model):
    speech, lengths = torch.randn(8, FS), torch.full((8,), FS)
    noise = torch.randn(8, FS)
    plain = model.student_view(speech, lengths, noise, generator=torch.Generator().manual_seed(3))
    model.enhanced_prob = 1.0
    enhanced = model.student_view(speech, lengths, noise, generator=torch.Generator().manual_seed(3))
    assert plain.shape == enhanced.shape and not torch.allclose(plain, enhanced)
