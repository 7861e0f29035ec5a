"""Enrollment embeddings: per-key tables for conditioned training, per-speaker conditions."""

import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet2_pse.data.kaldi_dir import read_table
from espnet2_pse.spk.embedder import load_embedder
from test.conftest import write_scp


@pytest.fixture(scope="module")
def teacher_args(teacher_files):
    return ["--model_type", "teacher", "--train_config", str(teacher_files["config"]),
            "--model_file", str(teacher_files["model"])]


def speaker_dump(root, spk_corpus, premixed: bool, with_clean: bool = True):
    """A target speaker's dump dir (meta.yaml, fsl_train, pretrain) from spkA's utterances."""
    wav = {k: v for k, v in read_table(spk_corpus["dir"] / "wav.scp").items() if k.startswith("spkA")}
    root.mkdir()
    (root / "meta.yaml").write_text(yaml.safe_dump({"speaker": root.name, "premixed": premixed}))
    for split in ("fsl_train", "pretrain") if with_clean else ("pretrain",):
        (root / split).mkdir()
        write_scp(root / split / "wav.scp", wav)
    return root


def test_pool_enrolls_every_key_with_another_utterance_of_its_speaker(
    spk_corpus, teacher_files, teacher_args, tmp_path
):
    from espnet2_pse.bin.spk_enroll import main

    data = tmp_path / "data"
    data.mkdir()
    for name in ("wav.scp", "utt2spk"):
        (data / name).write_text((spk_corpus["dir"] / name).read_text())
    (data / "spk1.scp").write_text((spk_corpus["dir"] / "wav.scp").read_text())
    main(teacher_args + ["--pool", f"train={data}", "--out_dir", str(tmp_path / "enroll")])

    enroll = read_table(tmp_path / "enroll" / "train" / "enroll_spk1.scp")
    utt2spk = read_table(data / "utt2spk")
    wavs = read_table(data / "wav.scp")
    assert sorted(enroll) == sorted(utt2spk)
    embed = load_embedder("teacher", str(teacher_files["config"]), str(teacher_files["model"]))
    for key, path in enroll.items():
        source = path.rsplit("/", 1)[1][: -len(".npy")]
        assert source != key and utt2spk[source] == utt2spk[key]
        vector = np.load(path)
        assert vector.shape == (192,) and abs(np.linalg.norm(vector) - 1.0) < 1e-4
    # The stored vector is the teacher's embedding of the enrolling utterance.
    key = sorted(enroll)[0]
    source = enroll[key].rsplit("/", 1)[1][: -len(".npy")]
    expected = embed(torch.from_numpy(soundfile.read(wavs[source], dtype="float32")[0])).numpy()
    np.testing.assert_allclose(np.load(enroll[key]), expected, atol=1e-5)


def test_speaker_conditions_clean_short_noisy(spk_corpus, teacher_args, tmp_path):
    from espnet2_pse.bin.spk_enroll import main

    corpus_spk = speaker_dump(tmp_path / "spkA", spk_corpus, premixed=False)
    user = speaker_dump(tmp_path / "user", spk_corpus, premixed=True, with_clean=False)
    out = tmp_path / "enroll"
    main(teacher_args + ["--speaker_dir", str(corpus_spk), "--speaker_dir", str(user),
                         "--noise_scp", str(spk_corpus["noise_scp"]), "--noisy_snr_db", "0",
                         "--enroll_seconds", "2", "--short_enroll_seconds", "0.5", "--out_dir", str(out)])

    summary = yaml.safe_load((out / "speakers" / "spkA" / "enroll.yaml").read_text())
    assert list(summary) == ["clean", "short", "noisy"]
    assert summary["clean"]["seconds"] == 2.0 and summary["short"]["seconds"] == 0.5
    assert summary["noisy"]["seconds"] == 2.0 and summary["clean"]["cosine_to_clean"] == pytest.approx(1.0, abs=1e-4)
    clean, noisy = (np.load(out / "speakers" / "spkA" / f"{c}.npy") for c in ("clean", "noisy"))
    assert float(clean @ noisy) < 0.9999  # the noise changed the embedding
    # A user with noisy recordings only: the noisy condition, from the recordings themselves.
    assert sorted(p.name for p in (out / "speakers" / "user").glob("*.npy")) == ["noisy.npy"]
    assert yaml.safe_load((out / "speakers" / "user" / "enroll.yaml").read_text())["noisy"]["cosine_to_clean"] is None


def test_bad_pool_argument_is_named(teacher_args, tmp_path):
    from espnet2_pse.bin.spk_enroll import main

    with pytest.raises(SystemExit, match="--pool expects NAME=DATA_DIR"):
        main(teacher_args + ["--pool", str(tmp_path), "--out_dir", str(tmp_path / "o")])
