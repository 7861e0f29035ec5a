"""``python -m espnet2_pse.bin.enhance``: folder trees, scp lists, bad files, overwrite guards."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from espnet2_pse.bin.enhance import main
from espnet2_pse.inference.chunked import ChunkedEnhancer, min_input_samples
from espnet2_pse.inference.model_loading import load_separate_speech
from test.user.conftest import build_tiny_model_dir, voice

# relative path -> (rate, channels, seconds, subtype); the output must keep rate and length.
TREE = {
    "day1/a.wav": (44100, 2, 2.5, "PCM_16"),
    "day1/deep/b.flac": (8000, 1, 3.0, "PCM_16"),
    "c.ogg": (22050, 1, 2.0, "VORBIS"),
    "d.WAV": (16000, 1, 1.5, "FLOAT"),
}


def write_tree(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for rel, (fs, channels, seconds, subtype) in TREE.items():
        x = voice(rng, seconds, fs) + 0.02 * rng.standard_normal(int(seconds * fs)).astype(np.float32)
        data = np.stack([x, 0.7 * x], axis=1) if channels == 2 else x
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / rel), data, fs, subtype=subtype)
    (root / "notes.txt").write_text("not audio")
    return root


def files_under(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def failed_lines(err: str):
    return [line for line in err.splitlines() if line.startswith("FAILED ")]


def test_folder_tree_keeps_relative_paths_rates_and_lengths(local_model, tmp_path):
    tree = write_tree(tmp_path / "in")
    single = tmp_path / "elsewhere" / "single.wav"
    single.parent.mkdir()
    sf.write(str(single), voice(np.random.default_rng(2), 2.0, 48000), 48000)
    out = tmp_path / "out"
    assert main(["--model", str(local_model), str(tree), str(single), "--out_dir", str(out),
                 "--chunk_seconds", "1.0", "--overlap_seconds", "0.25"]) == 0

    assert files_under(out) == sorted(list(TREE) + ["single.wav"])
    for rel, (fs, _, seconds, subtype) in TREE.items():
        info = sf.info(str(out / rel))
        assert (info.samplerate, info.channels, info.frames) == (fs, 1, int(seconds * fs)), rel
        assert info.format == sf.info(str(tree / rel)).format
    assert sf.info(str(out / "single.wav")).samplerate == 48000
    # The written samples are the model's output on the channel average of the input.
    x, fs = sf.read(str(tree / "day1/a.wav"), dtype="float32")
    expected = ChunkedEnhancer(load_separate_speech(local_model), chunk_seconds=1.0, overlap_seconds=0.25)
    y, _ = sf.read(str(out / "day1/a.wav"), dtype="float32")
    np.testing.assert_allclose(y, np.clip(expected.enhance_array(x, fs), -1, 1), atol=2e-4)
    assert np.abs(y - x.mean(axis=1)).max() > 1e-2  # it did change the signal


def test_scp_entries_are_written_as_key_wav(local_model, tmp_path, capsys):
    write_tree(tmp_path / "in")
    scp = tmp_path / "wav.scp"
    scp.write_text(
        f"utt1 {tmp_path / 'in/day1/deep/b.flac'}\n"
        f"utt2 in/c.ogg\n"  # relative to the scp's folder
        f"../evil {tmp_path / 'in/c.ogg'}\n"
        "utt3 sox in.wav -t wav - |\n"
    )
    out = tmp_path / "out"
    assert main(["--model", str(local_model), str(scp), "--out_dir", str(out), "--quiet"]) == 1
    assert files_under(out) == ["utt1.wav", "utt2.wav"]
    assert sf.info(str(out / "utt1.wav")).samplerate == 8000
    failed = failed_lines(capsys.readouterr().err)
    assert len(failed) == 2
    assert any(f"{scp}:3" in line and "'../evil'" in line for line in failed)
    assert any(f"{scp}:4" in line and "pipes are not supported" in line for line in failed)


def test_bad_files_are_reported_and_the_others_processed(local_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(str(folder / "good1.wav"), voice(np.random.default_rng(0), 1.0), 16000)
    (folder / "corrupt.wav").write_bytes(b"RIFF1234WAVEfmt nonsense")
    sf.write(str(folder / "empty.wav"), np.zeros(0, dtype=np.float32), 16000)
    nan = np.full(16000, 0.1, dtype=np.float32)
    nan[5000] = np.nan
    sf.write(str(folder / "nan.wav"), nan, 16000, subtype="FLOAT")
    sf.write(str(folder / "zz_good2.flac"), voice(np.random.default_rng(1), 1.0), 16000)
    out = tmp_path / "out"
    assert main(["--model", str(local_model), str(folder), str(tmp_path / "missing.wav"),
                 "--out_dir", str(out), "--quiet"]) == 1

    assert files_under(out) == ["good1.wav", "zz_good2.flac"]  # no temporary files left behind
    failed = failed_lines(capsys.readouterr().err)
    reasons = {name: next(line for line in failed if name in line) for name in
               ("corrupt.wav", "empty.wav", "nan.wav", "missing.wav")}
    assert len(failed) == 4
    assert "cannot be decoded" in reasons["corrupt.wav"]
    assert "empty" in reasons["empty.wav"]
    assert "NaN" in reasons["nan.wav"]
    assert "no such file" in reasons["missing.wav"]


def test_file_shorter_than_the_encoder_kernel_is_reported(local_model, tmp_path, capsys):
    needed = load_separate_speech(local_model).enh_model.encoder.kernel_size  # 16 in this model
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(str(folder / "blip.wav"), np.full(needed - 6, 0.1, dtype=np.float32), 16000)
    sf.write(str(folder / "blip48k.wav"), np.full(3 * (needed - 6), 0.1, dtype=np.float32), 48000)
    sf.write(str(folder / "good.wav"), voice(np.random.default_rng(0), 1.0), 16000)
    # chunk + 1 samples without overlap: a 1-sample last chunk, padded, not an error.
    sf.write(str(folder / "tail.wav"), voice(np.random.default_rng(1), 0.5)[:4001], 16000)
    out = tmp_path / "out"
    assert main(["--model", str(local_model), str(folder), "--out_dir", str(out), "--quiet",
                 "--chunk_seconds", "0.25", "--overlap_seconds", "0"]) == 1

    assert files_under(out) == ["good.wav", "tail.wav"]
    assert sf.info(str(out / "tail.wav")).frames == 4001
    failed = failed_lines(capsys.readouterr().err)
    assert sorted(failed) == [
        f"FAILED {folder / 'blip.wav'}: too short: {needed - 6} samples at 16000 Hz, at least {needed} needed",
        f"FAILED {folder / 'blip48k.wav'}: too short: {needed - 6} samples at 16000 Hz "
        f"(after resampling from 48000 Hz), at least {needed} needed",
    ]


def test_min_input_samples_comes_from_the_encoder():
    from espnet2.enh.encoder.conv_encoder import ConvEncoder
    from espnet2.enh.encoder.null_encoder import NullEncoder
    from espnet2.enh.encoder.stft_encoder import STFTEncoder

    assert min_input_samples(SimpleNamespace(encoder=ConvEncoder(8, kernel_size=40, stride=20))) == 40
    # centred frames reflect-pad n_fft // 2 samples, which torch needs fewer of than the input
    assert min_input_samples(SimpleNamespace(encoder=STFTEncoder(n_fft=512, hop_length=128))) == 257
    assert min_input_samples(SimpleNamespace(encoder=STFTEncoder(n_fft=256, center=False))) == 256
    assert min_input_samples(SimpleNamespace(encoder=NullEncoder())) == 1


def test_outputs_never_overwrite_inputs(local_model, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "a.wav"
    sf.write(str(path), voice(np.random.default_rng(0), 1.0), 16000)
    before = path.read_bytes()
    # The input folder itself, or a folder inside it, is refused before anything runs.
    assert main(["--model", str(local_model), str(folder), "--out_dir", str(folder), "--quiet"]) == 2
    assert main(["--model", str(local_model), str(folder), "--out_dir", str(folder / "enh"), "--quiet"]) == 2
    assert files_under(folder) == ["a.wav"]
    # A file given directly whose output name is the file itself.
    assert main(["--model", str(local_model), str(path), "--out_dir", str(folder), "--quiet"]) == 1
    failed = failed_lines(capsys.readouterr().err)
    assert len(failed) == 1 and str(path) in failed[0] and "would overwrite an input file" in failed[0]
    assert path.read_bytes() == before and files_under(folder) == ["a.wav"]


def test_model_that_cannot_be_found_is_a_usage_error(tmp_path, caplog):
    sf.write(str(tmp_path / "a.wav"), np.zeros(1600, dtype=np.float32), 16000)
    assert main(["--model", str(tmp_path / "nothing.zip"), str(tmp_path / "a.wav"),
                 "--out_dir", str(tmp_path / "out"), "--quiet"]) == 2
    assert "nothing.zip" in caplog.text and "Hugging Face" in caplog.text
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "config.yaml").write_text("separator: [unclosed\n")
    (broken / "model.pth").write_bytes(b"")
    caplog.clear()
    assert main(["--model", str(broken), str(tmp_path / "a.wav"), "--out_dir", str(tmp_path / "out"), "--quiet"]) == 2
    assert f"cannot load model {broken}" in caplog.text
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def speaker_model(tmp_path_factory):
    """A speaker-conditioned model that takes a precomputed 8-dim embedding as enroll_ref1."""
    return build_tiny_model_dir(
        tmp_path_factory.mktemp("pconv"),
        {"layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8, "embed_dim": 8},
        separator="pconv_tasnet",
    )


def test_enroll_reaches_the_speaker_conditioned_separator(speaker_model, tmp_path, caplog):
    sf.write(str(tmp_path / "a.wav"), voice(np.random.default_rng(0), 1.0), 16000)
    rng = np.random.default_rng(0)
    outputs = []
    for i in range(2):
        np.save(tmp_path / f"emb{i}.npy", rng.standard_normal(8).astype(np.float32))
        out = tmp_path / f"out{i}"
        assert main(["--model", str(speaker_model), "--enroll", str(tmp_path / f"emb{i}.npy"),
                     str(tmp_path / "a.wav"), "--out_dir", str(out), "--quiet"]) == 0
        outputs.append(sf.read(str(out / "a.wav"))[0])
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3  # the embedding changes the output
    # Without enrollment: a usage error naming --enroll, before any file is processed.
    assert main(["--model", str(speaker_model), str(tmp_path / "a.wav"), "--out_dir",
                 str(tmp_path / "none"), "--quiet"]) == 2
    assert "is speaker-conditioned: give --enroll" in caplog.text
    assert not (tmp_path / "none").exists()
