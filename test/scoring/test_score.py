import numpy as np
import pytest
import soundfile
import torch
import yaml

from espnet2_pse.bin.score import count_parameters, main
from test.scoring.signals import FS, speech_like

KEYS = ("utt_a", "utt_b", "utt_c")


def write_wav(path, x, fs=FS):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x, fs, subtype="PCM_16")
    return path


def write_scp(path, entries):
    path.write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
    return path


@pytest.fixture
def test_set(tmp_path):
    """Three 1.5-s utterances at 0 dB SNR; 'enhanced' keeps a tenth of the noise (+20 dB)."""
    rng = np.random.default_rng(0)
    scps = {"ref": {}, "mix": {}, "enh": {}, "ident": {}}
    for i, key in enumerate(KEYS):
        ref = speech_like(1.5, seed=i)
        noise = rng.standard_normal(ref.size)
        noise *= np.sqrt(np.dot(ref, ref) / np.dot(noise, noise))
        mix = 0.5 * (ref + noise)  # keep |x| < 1 for PCM_16
        ref, enh = 0.5 * ref, 0.5 * (ref + 0.1 * noise)
        scps["ref"][key] = write_wav(tmp_path / "ref" / f"{key}.wav", ref)
        scps["mix"][key] = write_wav(tmp_path / "mix" / f"{key}.wav", mix)
        scps["enh"][key] = write_wav(tmp_path / "enh" / f"{key}.wav", enh)
        scps["ident"][key] = write_wav(tmp_path / "ident" / f"{key}.wav", mix)
    return {name: write_scp(tmp_path / f"{name}.scp", entries) for name, entries in scps.items()}


def read_tsv(path):
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    return header, {ln.split("\t")[0]: dict(zip(header[1:], map(float, ln.split("\t")[1:]))) for ln in lines[1:]}


def test_score_writes_table_and_summary(test_set, tmp_path):
    out = tmp_path / "score"
    main(["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]),
          "--inf_scp", str(test_set["enh"]), "--out_dir", str(out)])
    header, rows = read_tsv(out / "per_utt.tsv")
    assert header == ["key", "si_sdr", "si_sdri", "snr", "snri", "pesq", "estoi"]
    assert list(rows) == list(KEYS)
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["num_utterances"] == 3 and summary["inf_scp"] == str(test_set["enh"])
    for col in header[1:]:
        values = [rows[k][col] for k in KEYS]
        assert summary["metrics"][col]["mean"] == pytest.approx(np.mean(values), abs=1e-5)
        assert summary["metrics"][col]["num_nan"] == 0
    # 0 dB mixture, noise down by 20 dB; PCM_16 rounding costs a little at +20 dB.
    assert summary["metrics"]["snr"]["mean"] == pytest.approx(20.0, abs=0.1)
    assert summary["metrics"]["snri"]["mean"] == pytest.approx(20.0, abs=0.1)
    assert summary["metrics"]["si_sdri"]["mean"] == pytest.approx(20.0, abs=0.3)
    assert sorted(p.name for p in out.iterdir()) == ["per_utt.tsv", "summary.yaml"]  # no temp files left
    # The unprocessed mixtures score worse on every perceptual metric.
    main(["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]), "--metrics", "pesq,estoi",
          "--out_dir", str(tmp_path / "unproc")])
    unproc = yaml.safe_load((tmp_path / "unproc" / "summary.yaml").read_text())["metrics"]
    for col in ("pesq", "estoi"):
        assert summary["metrics"][col]["mean"] > unproc[col]["mean"] + 0.05


def test_identity_enhancer_and_unprocessed_score_zero_improvement(test_set, tmp_path):
    base = ["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]), "--metrics", "si_sdr,snr"]
    main(base + ["--inf_scp", str(test_set["ident"]), "--out_dir", str(tmp_path / "ident")])
    main(base + ["--out_dir", str(tmp_path / "unproc")])
    for name in ("ident", "unproc"):
        header, rows = read_tsv(tmp_path / name / "per_utt.tsv")
        assert header == ["key", "si_sdr", "si_sdri", "snr", "snri"]
        assert all(r["si_sdri"] == 0.0 and r["snri"] == 0.0 for r in rows.values())
        assert all(r["snr"] == pytest.approx(0.0, abs=0.05) for r in rows.values())
    unproc = yaml.safe_load((tmp_path / "unproc" / "summary.yaml").read_text())
    assert unproc["inf_scp"] is None and unproc["metrics"]["si_sdri"]["mean"] == 0.0


def test_missing_inference_keys_are_named(test_set, tmp_path):
    partial = write_scp(tmp_path / "partial.scp", {"utt_a": tmp_path / "enh" / "utt_a.wav"})
    with pytest.raises(KeyError, match=r"partial\.scp lacks 2 key\(s\).*utt_b, utt_c"):
        main(["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]),
              "--inf_scp", str(partial), "--out_dir", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "summary.yaml").exists()


@pytest.mark.parametrize("problem", ["missing", "corrupt", "stereo", "rate", "nan", "duplicate"])
def test_bad_input_names_the_file(test_set, tmp_path, problem):
    bad = tmp_path / "bad" / "utt_b.wav"
    x = speech_like(1.5, seed=1) * 0.5
    entries = dict(line.split(" ", 1) for line in test_set["enh"].read_text().splitlines())
    if problem == "missing":
        match = r"utterance 'utt_b' \(.*bad/utt_b\.wav\): file does not exist"
    elif problem == "corrupt":
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"RIFF not really a wave file")
        match = "utterance 'utt_b'.*cannot read audio"
    elif problem == "stereo":
        write_wav(bad, np.stack([x, x], axis=1))
        match = "utt_b.*2 channels"
    elif problem == "rate":
        write_wav(bad, x, fs=8000)
        match = "utt_b.*8000 Hz"
    elif problem == "nan":
        bad.parent.mkdir(parents=True)
        soundfile.write(str(bad), np.full(100, np.nan), FS, subtype="FLOAT")
        match = "utt_b.*NaN"
    entries["utt_b"] = str(bad)
    scp = write_scp(tmp_path / "bad.scp", entries)
    if problem == "duplicate":
        scp.write_text(scp.read_text() + "utt_a /x.wav\n")
        match = r"bad\.scp:4: duplicate key 'utt_a'"
    with pytest.raises(ValueError, match=match):
        main(["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]),
              "--inf_scp", str(scp), "--out_dir", str(tmp_path / "o"), "--metrics", "si_sdr"])


def test_parameter_count_in_summary(test_set, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    torch.save(model.state_dict(), tmp_path / "m.pth")
    assert count_parameters(tmp_path / "m.pth") == 4 * 3 + 3 + 3 + 3  # running stats excluded
    main(["--ref_scp", str(test_set["ref"]), "--mix_scp", str(test_set["mix"]), "--metrics", "snr",
          "--out_dir", str(tmp_path / "o"), "--model_file", str(tmp_path / "m.pth")])
    assert yaml.safe_load((tmp_path / "o" / "summary.yaml").read_text())["num_params"] == 21


def test_cli_help_and_required_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0 and "--inf_scp" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_folder_of_recordings_is_scored_before_and_after_without_references(tmp_path, caplog):
    """pse-score --folder: DNSMOS, pDNSMOS and similarity to the enrollment of each recording and
    of its enhanced version (same relative path, .wav); any rate or channel count; a file that
    cannot be read is named, the others are still scored, and the exit code says so."""
    rng = np.random.default_rng(1)
    clean = 0.5 * speech_like(4.0, seed=3)
    noisy = clean + 0.05 * rng.standard_normal(clean.size)
    write_wav(tmp_path / "rec" / "a.wav", noisy)
    stereo = np.stack([noisy, noisy], axis=1)[::2]  # 8 kHz, two channels
    write_wav(tmp_path / "rec" / "sub" / "b.flac", stereo, fs=8000)
    (tmp_path / "rec" / "broken.wav").write_bytes(b"not audio")
    write_wav(tmp_path / "enh" / "a.wav", clean)
    write_wav(tmp_path / "enh" / "sub" / "b.wav", clean[::2], fs=8000)
    write_wav(tmp_path / "me.wav", 0.5 * speech_like(3.0, seed=4))
    code = main(["--folder", str(tmp_path / "rec"), "--enhanced_dir", str(tmp_path / "enh"),
                 "--enroll", str(tmp_path / "me.wav"), "--out_dir", str(tmp_path / "out")])
    assert code == 1 and "broken.wav" in caplog.text
    header, rows = read_tsv(tmp_path / "out" / "per_utt.tsv")
    assert sorted(rows) == ["a.wav", "sub/b.flac"]
    assert {"dnsmos_ovrl_input", "pdnsmos_bak_enhanced", "spk_sim_input", "spk_sim_enhanced"} <= set(header)
    # Removing the noise raises DNSMOS BAK.
    assert rows["a.wav"]["dnsmos_bak_enhanced"] > rows["a.wav"]["dnsmos_bak_input"] + 0.5
    summary = yaml.safe_load((tmp_path / "out" / "summary.yaml").read_text())
    assert summary["num_utterances"] == 2 and "broken.wav" in summary["failed"]
    with pytest.raises(SystemExit):
        main(["--folder", str(tmp_path / "rec"), "--ref_scp", "x.scp", "--out_dir", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="si_sdr need a clean reference"):
        main(["--folder", str(tmp_path / "rec"), "--metrics", "si_sdr,dnsmos", "--out_dir", str(tmp_path / "o")])
