import logging

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from espnet2_pse.bin.make_results import main, make_results
from espnet2_pse.scoring.results import collect


def write_summary(exp, rel, si_sdri, pesq, num_params=None):
    path = exp / rel / "score" / "summary.yaml"
    path.parent.mkdir(parents=True)
    summary = {
        "num_utterances": 4,
        "metrics": {
            "si_sdr": {"mean": si_sdri - 2.0, "std": 1.0, "num_nan": 0},
            "si_sdri": {"mean": si_sdri, "std": 1.0, "num_nan": 0},
            "pesq": {"mean": pesq, "std": 0.1, "num_nan": 0},
        },
    }
    if num_params is not None:
        summary["num_params"] = num_params
    path.write_text(yaml.safe_dump(summary))


@pytest.fixture
def exp(tmp_path):
    exp = tmp_path / "exp"
    for spk in ("spk1", "spk2"):
        write_summary(exp, f"unprocessed/{spk}", 0.0, 1.2)
    write_summary(exp, "generalist_small/zsl/spk1", 5.0, 1.5, num_params=1000)
    write_summary(exp, "generalist_small/zsl/spk2", 7.0, 1.7, num_params=1000)
    write_summary(exp, "generalist_small/fsl_3s/spk1", 6.0, 1.6, num_params=1000)
    write_summary(exp, "generalist_small/fsl_3s/spk2", 8.0, 1.8, num_params=1000)
    write_summary(exp, "generalist_small/fsl_10.5s/spk1", 9.0, 1.9, num_params=1000)
    write_summary(exp, "generalist_small/fsl_10.5s/spk2", 9.5, 2.0, num_params=1000)
    write_summary(exp, "pseudo_se_dp_large/zsl/spk1", 10.0, 2.5, num_params=1_500_000)
    write_summary(exp, "pseudo_se_dp_large/zsl/spk2", 12.0, 2.7, num_params=1_500_000)
    write_summary(exp, "pseudo_se_dp_small/zsl/spk1", 8.0, 2.1, num_params=1000)
    write_summary(exp, "pseudo_se_dp_small/fsl_3s/spk1", 8.5, 2.2, num_params=1000)
    # Two directories that break the convention: skipped, not guessed at.
    write_summary(exp, "generalist/zsl/spk1", 99.0, 4.0)
    write_summary(exp, "cm_small/oneshot/spk1", 99.0, 4.0)
    return exp


def table_rows(md, title):
    blocks = md.split(f"## {title}\n\n", 1)[1].split("## ", 1)[0].split("\n\n")
    section = next(b for b in blocks if b.startswith("|"))  # the table, after any description
    lines = section.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_results_tables_and_plots(exp, tmp_path, caplog):
    out = tmp_path / "report" / "RESULTS.md"
    with caplog.at_level(logging.WARNING):
        main(["--exp_dir", str(exp), "--out", str(out)])
    assert "generalist/zsl/spk1" in caplog.text and "oneshot" in caplog.text
    md = out.read_text()
    assert "99.00" not in md

    header, rows = table_rows(md, "SI-SDRi (dB)")
    assert header == ["Method", "Size", "Params", "Zero-shot", "Few-shot 3 s", "Few-shot 10.5 s"]
    assert rows == [
        ["unprocessed", "–", "–", "0.00 ± 0.00", "0.00 ± 0.00", "0.00 ± 0.00"],
        ["generalist", "small", "1.0 k", "6.00 ± 1.00", "7.00 ± 1.00", "9.25 ± 0.25"],
        ["pseudo_se_dp", "small", "1.0 k", "8.00 ± 0.00 (n=1)", "8.50 ± 0.00 (n=1)", "–"],
        ["pseudo_se_dp", "large", "1.50 M", "11.00 ± 1.00", "–", "–"],
    ]
    _, rows = table_rows(md, "PESQ-WB")
    assert rows[0][3] == "1.20 ± 0.00" and rows[1][3] == "1.60 ± 0.10"
    _, rows = table_rows(md, "SI-SDR (dB)")
    assert rows[3][3] == "9.00 ± 1.00"
    header, rows = table_rows(md, "SI-SDRi (dB) per target speaker")
    assert header == ["Method", "Size", "Setting", "spk1", "spk2"]
    assert ["pseudo_se_dp", "small", "Few-shot 3 s", "8.50", "–"] in rows
    assert len(rows) == 1 + 3 + 2 + 1  # unprocessed + generalist x3 + small x2 + large x1

    for name in ("sisdri_vs_clean_seconds.png", "sisdri_vs_params.png"):
        assert f"]({name})" in md
        image = imread(out.parent / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert np.ptp(image[..., :3]) > 0.5  # something was drawn
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "RESULTS.md", "sisdri_vs_clean_seconds.png", "sisdri_vs_params.png"]


def test_without_parameter_counts_the_params_plot_is_explained(tmp_path):
    exp = tmp_path / "exp"
    write_summary(exp, "unprocessed/spk1", 0.0, 1.2)
    write_summary(exp, "cm_tiny/zsl/spk1", 3.0, 1.4)
    make_results(exp, tmp_path / "RESULTS.md")
    md = (tmp_path / "RESULTS.md").read_text()
    assert "SI-SDRi vs model parameters: not drawn (no summary records a parameter count" in md
    assert (tmp_path / "sisdri_vs_clean_seconds.png").is_file()
    assert not (tmp_path / "sisdri_vs_params.png").exists()


def test_bad_summaries_are_named(tmp_path):
    exp = tmp_path / "exp"
    with pytest.raises(FileNotFoundError, match="experiment directory not found"):
        collect(exp)
    exp.mkdir()
    with pytest.raises(FileNotFoundError, match="no score summaries"):
        make_results(exp, tmp_path / "RESULTS.md")
    bad = exp / "cm_tiny" / "zsl" / "spk1" / "score" / "summary.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("metrics: [unclosed\n")
    with pytest.raises(ValueError, match="cm_tiny/zsl/spk1/score/summary.yaml: not valid YAML"):
        make_results(exp, tmp_path / "RESULTS.md")
    bad.write_text("metrics:\n  si_sdri: {std: 1.0}\n")
    with pytest.raises(ValueError, match="summary.yaml: metrics.si_sdri has no 'mean'"):
        make_results(exp, tmp_path / "RESULTS.md")
    assert not (tmp_path / "RESULTS.md").exists()


def test_speaker_encoder_sections(exp, tmp_path):
    """Conditioned static vs refined, EER and cost tables come from their own files."""
    for spk, base in (("spk1", 4.0), ("spk2", 6.0)):
        write_summary(exp, f"generalist_cpu/zsl/{spk}", base, 1.5)
        for enroll, shift in (("clean", 1.0), ("short", 0.0), ("noisy", -0.5)):
            write_summary(exp, f"conditioned_cpu/enroll/{enroll}_static/{spk}", base + shift, 1.5)
            write_summary(exp, f"conditioned_cpu/enroll/{enroll}_hoploop/{spk}", base + shift - 0.25, 1.5)
            write_summary(exp, f"conditioned_cpu/enroll/{enroll}_refined/{spk}", base + shift + 0.5, 1.5)
            write_summary(exp, f"conditioned_cpu/enroll/{enroll}_refined_input/{spk}", base + shift + 0.1, 1.5)
            stats = exp / f"conditioned_cpu/enroll/{enroll}_refined/{spk}/enhanced/refinement.yaml"
            stats.parent.mkdir(parents=True)
            stats.write_text(yaml.safe_dump({"overall": {"updates": 10, "accepted": 6, "accept_rate": 0.6}}))
    spk_eval = exp / "spk_eval"
    spk_eval.mkdir()
    for name, eer in (("teacher_clean", 0.01), ("teacher_noisy", 0.2), ("student_clean", 0.1),
                      ("student_2.0s_noisy", 0.3)):
        (spk_eval / f"{name}.yaml").write_text(yaml.safe_dump({"eer": eer, "n_target": 5, "n_nontarget": 5}))
    (spk_eval / "cost.yaml").write_text(yaml.safe_dump({
        "rows": [{"name": "student", "params": 152432, "mmac_per_s": 6.6},
                 {"name": "conditioned_cpu", "params": 90000, "mmac_per_s": 150.0}],
        "student_percent_of_pse": {"conditioned_cpu": {"student": 4.4}}}))

    md = make_results(exp, tmp_path / "RESULTS.md").read_text()
    _, rows = table_rows(md, "Speaker-conditioned generalist: static vs refined embedding (SI-SDRi, dB)")
    assert rows[0][:3] == ["cpu", "none (unconditioned generalist)", "5.00"]
    assert [r[1] for r in rows[1:]] == ["clean", "short", "noisy"]
    assert rows[1][2:] == ["6.00", "5.75", "6.50", "6.10", "+0.75", "60 %"]
    assert rows[3][2:6] == ["4.50", "4.25", "5.00", "4.60"]
    _, rows = table_rows(md, "Speaker verification (EER)")
    assert rows[0][:4] == ["teacher", "whole utterance", "1.0", "20.0"]
    assert ["student", "first 2 s", "–", "30.0", "5 / 5"] in rows
    assert "| student | 152,432 | 6.6 |" in md and "student 4.40 %" in md
