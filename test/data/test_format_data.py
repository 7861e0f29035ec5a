"""Stage 2's speed perturbation: new voices in generalist/train, reformatted when the factors change."""

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet2_pse.bin import format_data
from espnet2_pse.data.kaldi_dir import read_data_dir, read_table, write_data_dir

RATE = 16000


def tone(path, hz, seconds=1.5):
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), RATE, subtype="PCM_16")
    return str(path)


def peak_hz(path):
    x, rate = sf.read(str(path), dtype="float32")
    return np.argmax(np.abs(np.fft.rfft(x))) * rate / len(x)


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    (root / "audio").mkdir(parents=True)
    (root / "speakers").mkdir()
    (root / "roles.yaml").write_text(yaml.safe_dump({"target": []}))
    for split, speakers in (("train", ("alice", "bob")), ("valid", ("carol",))):
        wav = {f"{spk}-{i}": tone(root / "audio" / f"{spk}-{i}.wav", 400 + 50 * i)
               for spk in speakers for i in range(2)}
        write_data_dir(root / "generalist" / split, wav, {k: k.split("-")[0] for k in wav}, "same")
    return root


def test_speed_perturbed_voices_join_generalist_train(data_root, tmp_path):
    dump = tmp_path / "dump"
    args = ["--data_root", str(data_root), "--dump_root", str(dump)]
    format_data.main(args + ["--speed_perturb", "0.9", "1.1"])
    train = read_data_dir(dump / "generalist" / "train", check_audio=True)
    assert len(train.keys) == 12 and train.wav == train.spk1
    assert train.tables["utt2spk"]["sp1.1-bob-1"] == "sp1.1-bob"
    # Played 1.1 times as fast: 1/1.1 as long, every frequency 1.1 times as high.
    assert train.utt2dur["sp1.1-bob-1"] == pytest.approx(1.5 / 1.1, abs=1e-3)
    assert train.utt2dur["sp0.9-bob-1"] == pytest.approx(1.5 / 0.9, abs=1e-3)
    assert peak_hz(train.wav["sp1.1-bob-1"]) == pytest.approx(450 * 1.1, abs=1.0)
    assert peak_hz(train.wav["bob-1"]) == pytest.approx(450, abs=1.0)
    # Six voices, each its own index, so talker injection never picks a perturbed copy as "other".
    index = read_table(dump / "generalist" / "train" / "utt2spk_index")
    assert len(set(index.values())) == 6 and index["sp0.9-alice-0"] == index["sp0.9-alice-1"]
    assert len(read_table(dump / "generalist" / "train" / "speech_shape")) == 12
    assert len(read_table(dump / "generalist" / "valid" / "wav.scp")) == 2  # validation stays as it is

    # Done with the same factors: skipped; other factors: formatted again.
    stamp = (dump / "generalist" / "train" / "wav.scp").stat().st_mtime_ns
    format_data.main(args + ["--speed_perturb", "0.9", "1.1"])
    assert (dump / "generalist" / "train" / "wav.scp").stat().st_mtime_ns == stamp
    format_data.main(args + ["--speed_perturb", "0.8"])
    keys = read_table(dump / "generalist" / "train" / "wav.scp")
    assert len(keys) == 8 and "sp0.8-alice-0" in keys and "sp0.9-alice-0" not in keys
    format_data.main(args)
    assert len(read_table(dump / "generalist" / "train" / "wav.scp")) == 4


@pytest.mark.parametrize("factors", [["1"], ["0.9", "0.9"], ["-0.9"], ["0"]])
def test_bad_speed_factors_are_refused_before_formatting(data_root, tmp_path, factors):
    with pytest.raises(SystemExit, match="--speed_perturb takes distinct positive factors other than 1"):
        format_data.main(["--data_root", str(data_root), "--dump_root", str(tmp_path / "dump"),
                          "--speed_perturb", *factors])
    assert not (tmp_path / "dump").exists()
