"""On-the-fly batches and losses of PseudoSE and Contrastive Mixtures."""

import logging
import os

import pytest
import torch

from espnet2_pse.data.mixing import snr_db
from espnet2_pse.ssl.contrastive_mixtures import ContrastiveMixtures, negative_term
from espnet2_pse.ssl.mixing import SNRSampler, blend_with_teacher
from espnet2_pse.ssl.pseudo_se import PseudoSE


def speech_batch(batch=6, length=8000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    f0 = 100 + 100 * torch.rand(batch, 1, generator=gen)
    return 0.3 * torch.sin(2 * torch.pi * f0 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))


def ones_mask(speech):
    return torch.ones_like(speech)


def test_pseudo_se_target_is_pseudo_source_and_snr_is_measured_against_it(tiny_corpus):
    objective = PseudoSE(
        inject_noise_scp=str(tiny_corpus["noise_scp"]),
        premix_noise_scp=str(tiny_corpus["noise_scp"]),
        batch_scaling=False,
    )
    speech = speech_batch()
    made = objective.make_batch(speech, ones_mask(speech))
    target, mixture = made["target"], made["input"]
    # The premixture was added: the target is the noisy pseudo-source, not the clean speech.
    premix_snr = snr_db(speech, target - speech)
    assert ((premix_snr >= -0.1) & (premix_snr <= 15.1)).all(), premix_snr
    assert torch.allclose(snr_db(target, mixture - target), made["snr"], atol=0.1)
    assert ((made["snr"] >= -5) & (made["snr"] <= 5)).all()


def test_pseudo_se_without_premixture_keeps_speech_and_scales_the_batch(tiny_corpus):
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]))
    speech = speech_batch()
    made = objective.make_batch(speech, ones_mask(speech))
    assert made["input"].abs().max() == pytest.approx(1.0, abs=1e-6)
    scale = speech.abs().max() / made["target"].abs().max()
    assert torch.allclose(made["target"] * scale, speech, atol=1e-5)


def test_padding_stays_silent(tiny_corpus):
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), batch_scaling=False)
    speech = speech_batch(batch=2)
    mask = torch.ones_like(speech)
    mask[1, 5000:] = 0
    made = objective.make_batch(speech * mask, mask)
    assert made["input"][1, 5000:].abs().max() == 0


def test_cm_pairs_share_target_or_noise(tiny_corpus):
    objective = ContrastiveMixtures(
        inject_noise_scp=str(tiny_corpus["noise_scp"]), premix_noise_scp=str(tiny_corpus["noise_scp"]),
    )
    speech = speech_batch(batch=8)
    p = objective.make_pairs(speech, ones_mask(speech))
    positive = p["positive"]
    assert positive.sum() == 2 and (~positive).sum() == 2  # ratio 0.5 of 4 pairs
    noise1, noise2 = p["input1"] - p["target1"], p["input2"] - p["target2"]
    cosine = torch.nn.functional.cosine_similarity(noise1, noise2, dim=-1)
    # Positives: same pseudo-source, different injections.
    assert torch.equal(p["target1"][positive], p["target2"][positive])
    assert (cosine[positive].abs() < 0.9).all(), cosine
    # Negatives: different pseudo-sources, one shared noise (up to its gain).
    assert not torch.allclose(p["target1"][~positive], p["target2"][~positive])
    assert torch.allclose(cosine[~positive], torch.ones(2), atol=1e-4), cosine
    assert torch.cat([p["input1"], p["input2"]]).abs().max() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "variant, expected, grad",
    [("sq", 4.0, 4.0), ("abs", 2.0, 1.0), ("max", 3.0, 1.0)],
)
def test_negative_term_values_and_gradients(variant, expected, grad):
    d_out = torch.tensor([3.0], requires_grad=True)
    d_target = torch.tensor([1.0])
    value = negative_term(d_out, d_target, variant)
    value.sum().backward()
    assert value.item() == pytest.approx(expected)
    assert d_out.grad.item() == pytest.approx(grad)


def test_max_negative_term_is_flat_when_outputs_are_too_similar():
    d_out = torch.tensor([-5.0], requires_grad=True)
    negative_term(d_out, torch.tensor([1.0]), "max").sum().backward()
    assert d_out.grad.item() == 0.0


def test_snr_sampler_ranges_and_bad_config():
    gen = torch.Generator().manual_seed(0)
    for distribution in ("uniform", "normal"):
        snr = SNRSampler((-5, 5), distribution)(1000, gen)
        assert snr.min() >= -5 and snr.max() <= 5 and abs(snr.mean()) < 0.5
    with pytest.raises(ValueError, match="distribution"):
        SNRSampler((0, 1), "laplace")
    with pytest.raises(ValueError, match="low, high"):
        SNRSampler((5, -5))


def test_missing_noise_bank_names_the_file(tmp_path):
    objective = PseudoSE(inject_noise_scp=str(tmp_path / "nope.scp"))
    with pytest.raises(FileNotFoundError, match="nope.scp"):
        objective.make_batch(speech_batch(2), torch.ones(2, 8000))


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from test.user.conftest import build_tiny_model_dir

    return build_tiny_model_dir(tmp_path_factory.mktemp("teacher"),
                                {"layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8})


def test_teacher_targets_blend_and_stay_out_of_the_state_dict(tiny_corpus, teacher_dir):
    from espnet2_pse.ssl.teacher import load_teacher, teacher_outputs

    files = {"config": str(teacher_dir / "config.yaml"), "model_file": str(teacher_dir / "model.pth")}
    teacher = load_teacher(files["config"], files["model_file"])
    speech = speech_batch(batch=3)
    cleaned = teacher_outputs(teacher, speech)
    assert cleaned.shape == speech.shape and not torch.allclose(cleaned, speech, atol=1e-3)
    for weight, teacher_input in ((1.0, False), (0.25, False), (1.0, True)):
        objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), batch_scaling=False,
                             teacher=files, teacher_weight=weight, teacher_input=teacher_input)
        made = objective.make_batch(speech, ones_mask(speech))
        assert torch.allclose(made["target"], weight * cleaned + (1 - weight) * speech, atol=1e-5)
        # The noise is measured against what it was added to: the teacher's output or s~.
        source = cleaned if teacher_input else speech
        assert torch.allclose(snr_db(source, made["input"] - source), made["snr"], atol=0.1)
    # The teacher is a plain attribute of the objective: a model trained with it saves the
    # same keys as without it.
    assert objective._teacher is not None and not isinstance(objective, torch.nn.Module)
    # teacher_reference: the batch also carries the teacher's output, scaled like the target.
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), teacher=files, teacher_weight=0.5,
                         teacher_reference=True)
    made = objective.make_batch(speech, ones_mask(speech))
    scale = (0.5 * cleaned + 0.5 * speech).div(made["target"]).median()
    assert made["input"].abs().max() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(made["teacher"] * scale, cleaned, atol=1e-4)


def band_energy(signal, low_hz, high_hz):
    """Energy in [low_hz, high_hz) of a Hann-windowed (B, T) signal at 16 kHz."""
    spectrum = torch.fft.rfft(signal * torch.hann_window(signal.size(-1)), dim=-1).abs().pow(2)
    freqs = torch.fft.rfftfreq(signal.size(-1), 1 / 16000)
    return spectrum[..., (freqs >= low_hz) & (freqs < high_hz)].sum(-1)


def test_teacher_blend_takes_each_share_in_its_band():
    gen = torch.Generator().manual_seed(0)
    teacher, source = torch.randn(2, 3, 16000, generator=gen)
    # One weight: exactly the plain blend.
    assert torch.equal(blend_with_teacher(teacher, source, 0.3, 16000), 0.3 * teacher + 0.7 * source)
    blended = blend_with_teacher(teacher, source, 0.0, 16000, weight_above=1.0, split_hz=4000)
    # Half an octave or more from the split, the blend is the source below and the teacher above.
    below, above = blended - source, blended - teacher
    assert (band_energy(below, 0, 2700) / band_energy(source, 0, 2700)).max() < 1e-3
    assert (band_energy(above, 5800, 8000) / band_energy(teacher, 5800, 8000)).max() < 1e-3
    # At the split it is half of each: a quarter of the difference's energy.
    middle = band_energy(below, 3800, 4200) / band_energy(teacher - source, 3800, 4200)
    assert ((middle > 0.2) & (middle < 0.3)).all(), middle
    # The shares are complementary in every band: swapping the signals and the weights' roles
    # gives the same blend.
    swapped = blend_with_teacher(source, teacher, 0.8, 16000, weight_above=0.1, split_hz=2000)
    assert torch.allclose(blend_with_teacher(teacher, source, 0.2, 16000, weight_above=0.9, split_hz=2000),
                          swapped, atol=1e-5)


def test_teacher_blend_takes_the_noise_share_where_the_teacher_removes():
    """Speech in the low band, noise in the high band; the teacher keeps the speech only."""
    gen = torch.Generator().manual_seed(1)
    t = torch.arange(16000) / 16000
    speech = 0.5 * torch.sin(2 * torch.pi * 300 * t).expand(2, -1)
    noise = blend_with_teacher(torch.zeros(2, 16000), torch.randn(2, 16000, generator=gen), 1.0, 16000,
                               weight_above=0.0, split_hz=2000)  # the noise above 2.8 kHz only
    recording = speech + noise
    blended = blend_with_teacher(speech, recording, 0.5, 16000, weight_noise=1.0)
    # Where the teacher keeps everything (the speech) the share stays 0.5, and the speech, in
    # both signals, is kept whole; where it removes everything (the noise) the share is 1.
    assert (band_energy(blended - speech, 250, 350) / band_energy(speech, 250, 350)).max() < 1e-4
    assert (band_energy(blended, 3000, 8000) / band_energy(noise, 3000, 8000)).max() < 1e-3
    plain = blend_with_teacher(speech, recording, 0.5, 16000)
    assert (band_energy(plain, 3000, 8000) / band_energy(noise, 3000, 8000)).min() > 0.2  # 0.5 ** 2


def test_teacher_share_above_the_split_in_pseudo_se_targets(tiny_corpus):
    noise = 0.01 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(2))
    speech, cleaned = speech_batch(batch=3), speech_batch(batch=3, seed=7) + noise  # the noise reaches 8 kHz
    files = {"config": "never.yaml", "model_file": "never.pth"}
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), batch_scaling=False, teacher=files,
                         teacher_weight=0.5, teacher_weight_above=1.0, teacher_split_hz=3000)
    made = objective.make_batch(speech, ones_mask(speech), precomputed=cleaned)
    assert torch.allclose(made["target"], blend_with_teacher(cleaned, speech, 0.5, 16000, weight_above=1.0,
                                                             split_hz=3000), atol=1e-6)
    # Above the crossover (4243 Hz) the target is the teacher's output, below 2121 Hz half of it
    # (away from the crop's edges, where the cut itself spreads over every band).
    target, cleaned, half = (x[:, 512:-512] for x in (made["target"], cleaned, 0.5 * cleaned + 0.5 * speech))
    assert (band_energy(target - cleaned, 4300, 8000) / band_energy(cleaned, 4300, 8000)).max() < 1e-3
    assert (band_energy(target - half, 0, 2100) / band_energy(half, 0, 2100)).max() < 1e-3


def test_precomputed_teacher_outputs_replace_the_teacher(tiny_corpus, teacher_dir, tmp_path, caplog):
    import shutil

    import soundfile

    from espnet2_pse.ssl.teacher import TEACHER_OUTPUT_KEY, load_teacher, teacher_outputs, write_teacher_outputs

    model_file = shutil.copy(teacher_dir / "model.pth", tmp_path / "model.pth")  # touched below
    files = {"config": str(teacher_dir / "config.yaml"), "model_file": str(model_file)}
    recordings = speech_batch(batch=2)
    scp = tmp_path / "spk1.scp"
    lines = []
    for i, row in enumerate(recordings):
        soundfile.write(tmp_path / f"rec{i}.wav", row[: 6000 + 1000 * i].numpy(), 16000, subtype="FLOAT")
        lines.append(f"rec{i} {tmp_path / f'rec{i}.wav'}\n")
    scp.write_text("".join(lines))
    caplog.set_level(logging.INFO)
    table = write_teacher_outputs(files["config"], files["model_file"], scp, tmp_path / "cache")
    teacher = load_teacher(files["config"], files["model_file"])
    for i, line in enumerate(table.read_text().splitlines()):
        key, path = line.split()
        written, rate = soundfile.read(path, dtype="float32")
        assert key == f"rec{i}" and rate == 16000 and written.shape == (6000 + 1000 * i,)
        expected = teacher_outputs(teacher, recordings[i : i + 1, : 6000 + 1000 * i])[0]
        assert torch.allclose(torch.from_numpy(written), expected, atol=1e-6)  # float WAV: exact
    write_teacher_outputs(files["config"], files["model_file"], scp, tmp_path / "cache")
    assert "teacher outputs: reusing" in caplog.text
    # The same weights unpacked anew (a rerun of personalize unpacks its base again): reused.
    os.utime(model_file, ns=(0, 0))
    caplog.clear()
    write_teacher_outputs(files["config"], files["model_file"], scp, tmp_path / "cache")
    assert "teacher outputs: reusing" in caplog.text
    # Another teacher (other weights) makes them again.
    state = torch.load(model_file, map_location="cpu")
    state = {k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, model_file)
    caplog.clear()
    write_teacher_outputs(files["config"], files["model_file"], scp, tmp_path / "cache")
    assert "reusing" not in caplog.text and "teacher outputs: 2/2 recordings" in caplog.text

    # In a batch, the precomputed outputs are the teacher's: the teacher itself never loads.
    speech, cleaned = speech_batch(batch=3), speech_batch(batch=3, seed=7)
    never_loaded = {"config": files["config"], "model_file": str(tmp_path / "absent.pth")}
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), batch_scaling=False,
                         teacher=never_loaded, teacher_weight=0.25)
    made = objective.make_batch(speech, ones_mask(speech), precomputed=cleaned)
    assert torch.allclose(made["target"], 0.25 * cleaned + 0.75 * speech, atol=1e-6)
    assert objective._teacher is None
    for wrong, message in (({}, "has no teacher"),
                           ({"teacher": never_loaded, "premix_noise_scp": str(tiny_corpus["noise_scp"])},
                            "premixture noise")):
        objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), **wrong)
        with pytest.raises(ValueError, match=f"{TEACHER_OUTPUT_KEY}.*{message}"):
            objective.make_batch(speech, ones_mask(speech), precomputed=cleaned)


def test_teacher_settings_are_checked(tiny_corpus, teacher_dir):
    noise = str(tiny_corpus["noise_scp"])
    with pytest.raises(ValueError, match="exactly the keys 'config' and 'model_file'"):
        PseudoSE(inject_noise_scp=noise, teacher={"config": "c.yaml"})
    with pytest.raises(ValueError, match="teacher_weight must be in"):
        PseudoSE(inject_noise_scp=noise, teacher={"config": "c", "model_file": "m"}, teacher_weight=1.5)
    for option, value in (("teacher_input", True), ("teacher_reference", True), ("teacher_weight_above", 1.0),
                          ("teacher_weight_noise", 1.0)):
        with pytest.raises(ValueError, match="teacher_weight_above and teacher_weight_noise need a teacher"):
            PseudoSE(inject_noise_scp=noise, **{option: value})
    files = {"config": "c", "model_file": "m"}
    for option in ("teacher_weight_above", "teacher_weight_noise"):
        with pytest.raises(ValueError, match=fr"{option} must be in \[0, 1\], got -0.1"):
            PseudoSE(inject_noise_scp=noise, teacher=files, **{option: -0.1})
    with pytest.raises(ValueError, match=r"teacher_split_hz must be in \(0, 8000\) Hz, got 9000"):
        PseudoSE(inject_noise_scp=noise, teacher=files, teacher_weight_above=1.0, teacher_split_hz=9000)
    missing = PseudoSE(inject_noise_scp=noise, teacher={"config": str(teacher_dir / "config.yaml"),
                                                        "model_file": str(teacher_dir / "nope.pth")})
    with pytest.raises(FileNotFoundError, match="teacher: no such file: .*nope.pth"):
        missing.make_batch(speech_batch(batch=1), ones_mask(speech_batch(batch=1)))


def test_talkers_are_added_at_their_tir_and_never_enter_the_target(tiny_corpus):
    """A share talker_prob of the inputs gets another voice at its TIR against s~; a share of
    those loses the injection noise; the target is the pseudo-source either way."""
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_scp=str(tiny_corpus["clean_scp"]),
                         talker_prob=0.5, talker_tir_range=(2.0, 8.0), talker_alone_prob=0.5, batch_scaling=False)
    speech = speech_batch(batch=400, length=4000)
    gen = objective.generator
    state = gen.get_state()
    noise, snr = objective.mixer.injection(400, 4000, gen)
    talker, keep_noise = objective.talkers(speech, gen)
    gen.set_state(state)
    made = objective.make_batch(speech, ones_mask(speech))
    assert torch.allclose(made["target"], speech)
    has_talker = talker.abs().amax(1) > 0
    assert 0.4 < has_talker.float().mean() < 0.6
    assert torch.allclose(snr_db(speech[has_talker], talker[has_talker]),
                          torch.full((int(has_talker.sum()),), 5.0), atol=3.01)
    alone = keep_noise == 0
    assert (alone <= has_talker).all() and 0.15 < alone.float().mean() < 0.35
    # Talker-alone inputs are s~ + talker exactly; the rest hold the noise at its SNR.
    assert torch.allclose(made["input"][alone], (speech + talker)[alone], atol=1e-6)
    plain = ~has_talker
    assert torch.allclose(snr_db(speech[plain], made["input"][plain] - speech[plain]), made["snr"][plain], atol=0.1)


def test_talker_settings_are_checked(tiny_corpus):
    with pytest.raises(ValueError, match=r"talker_prob must be in \[0, 1\], got 1.5"):
        PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_scp=str(tiny_corpus["clean_scp"]),
                 talker_prob=1.5)
    objective = PseudoSE(inject_noise_scp=str(tiny_corpus["noise_scp"]), talker_scp="/nowhere/wav.scp")
    with pytest.raises(FileNotFoundError, match="interfering talker bank: scp file '/nowhere/wav.scp'"):
        objective.make_batch(speech_batch(), ones_mask(speech_batch()))


def test_cleanest_segments_keep_the_least_noisy_share(tmp_path, caplog):
    """Segments of known SNR, with the clean speech as the 'teacher output': the estimate is the
    true SNR, and the subset holds the cleanest segments until the share (or the floor) is met."""
    import numpy as np
    import soundfile

    from espnet2_pse.data.kaldi_dir import read_data_dir, write_data_dir
    from espnet2_pse.ssl.teacher import cleanest_segments, estimated_snr_db

    rng = np.random.default_rng(0)
    snrs = {f"me-{k}": snr for k, snr in zip("abcdef", (0.0, 12.0, 3.0, 20.0, 6.0, 9.0))}
    wav, cleaned = {}, {}
    for key, snr in snrs.items():
        speech = 0.1 * rng.standard_normal(8000)
        noise = rng.standard_normal(8000)
        noise *= np.sqrt(np.sum(speech ** 2) / np.sum(noise ** 2) / 10 ** (snr / 10))
        for table, signal, name in ((wav, speech + noise, "rec"), (cleaned, speech, "out")):
            table[key] = str(tmp_path / f"{name}_{key}.wav")
            soundfile.write(table[key], signal, 16000, subtype="FLOAT")
        assert estimated_snr_db(speech + noise, speech) == pytest.approx(snr, abs=1e-3)
    segments = write_data_dir(tmp_path / "pretrain", wav, {k: "me" for k in wav}, spk1="same")
    (tmp_path / "teacher.scp").write_text("".join(f"{k} {p}\n" for k, p in cleaned.items()))
    caplog.set_level(logging.INFO)
    # Half of 3 s of audio: the three cleanest 0.5-s segments.
    half = cleanest_segments(segments, tmp_path / "teacher.scp", 0.5, 0.0, tmp_path / "half")
    kept = ["me-b", "me-d", "me-f"]
    assert half.keys == kept and read_data_dir(tmp_path / "half").spk1 == {k: wav[k] for k in kept}
    assert "the 3 least noisy of 6 segments (0.0 of 0.1 min; the teacher's SNR estimate 9.0 dB and above)" in caplog.text
    # The floor wins over a small share; a share of 1 keeps everything.
    assert cleanest_segments(segments, tmp_path / "teacher.scp", 0.1, 2.0, tmp_path / "floor").keys == ["me-b", "me-d", "me-e", "me-f"]
    assert cleanest_segments(segments, tmp_path / "teacher.scp", 1.0, 0.0, tmp_path / "all").keys == sorted(snrs)
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\], got 0"):
        cleanest_segments(segments, tmp_path / "teacher.scp", 0.0, 0.0, tmp_path / "none")
    (tmp_path / "teacher.scp").write_text(f"me-a {cleaned['me-a']}\n")
    with pytest.raises(ValueError, match="teacher.scp: no teacher output for segment 'me-b' \\(5 missing\\)"):
        cleanest_segments(segments, tmp_path / "teacher.scp", 0.5, 0.0, tmp_path / "missing")
