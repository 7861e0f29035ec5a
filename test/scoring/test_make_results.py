import logging
import re

import numpy as np
import pytest
import yaml
from matplotlib.image import imread

from espnet2_pse.bin.make_results import main, make_results
from espnet2_pse.scoring.model_card import results_metrics
from espnet2_pse.scoring.results import collect


def write_summary(exp, rel, si_sdri, pesq=None, num_params=None, estoi=None):
    """A score summary; PESQ and eSTOI only when given (as with score --metrics)."""
    path = exp / rel / "score" / "summary.yaml"
    path.parent.mkdir(parents=True)
    metrics = {
        "si_sdr": {"mean": si_sdri - 2.0, "std": 1.0, "num_nan": 0},
        "si_sdri": {"mean": si_sdri, "std": 1.0, "num_nan": 0},
    }
    for name, value in (("pesq", pesq), ("estoi", estoi)):
        if value is not None:
            metrics[name] = {"mean": value, "std": 0.1, "num_nan": 0}
    summary = {"num_utterances": 4, "metrics": metrics}
    if num_params is not None:
        summary["num_params"] = num_params
    path.write_text(yaml.safe_dump(summary))


@pytest.fixture
def exp(tmp_path):
    exp = tmp_path / "exp"
    write_summary(exp, "unprocessed/spk1", 0.0, 1.2, estoi=0.50)
    write_summary(exp, "unprocessed/spk2", 0.0, 1.2, estoi=0.52)
    write_summary(exp, "generalist_small/zsl/spk1", 5.0, 1.5, num_params=1000, estoi=0.60)
    write_summary(exp, "generalist_small/zsl/spk2", 7.0, 1.7, num_params=1000, estoi=0.64)
    write_summary(exp, "generalist_small/fsl_3s/spk1", 6.0, 1.6, num_params=1000, estoi=0.61)
    write_summary(exp, "generalist_small/fsl_3s/spk2", 8.0, 1.8, num_params=1000, estoi=0.65)
    write_summary(exp, "generalist_small/fsl_10.5s/spk1", 9.0, 1.9, num_params=1000, estoi=0.70)
    write_summary(exp, "generalist_small/fsl_10.5s/spk2", 9.5, 2.0, num_params=1000, estoi=0.72)
    write_summary(exp, "pseudo_se_dp_large/zsl/spk1", 10.0, 2.5, num_params=1_500_000, estoi=0.80)
    write_summary(exp, "pseudo_se_dp_large/zsl/spk2", 12.0, 2.7, num_params=1_500_000, estoi=0.82)
    write_summary(exp, "pseudo_se_dp_small/zsl/spk1", 8.0, 2.1, num_params=1000, estoi=0.75)
    # Scored without eSTOI: its cells say "n.s." rather than going blank.
    write_summary(exp, "pseudo_se_dp_small/fsl_3s/spk1", 8.5, 2.2, num_params=1000)
    # Two directories that break the convention: skipped, not guessed at.
    write_summary(exp, "generalist/zsl/spk1", 99.0, 4.0)
    write_summary(exp, "cm_small/oneshot/spk1", 99.0, 4.0)
    return exp


def table_rows(md, title, level=2):
    """Header and rows of the first table under the heading ``title`` (## or, level 3, ###)."""
    heading = f"{'#' * level} {title}"
    assert heading in md.splitlines(), heading
    body = md.split(f"\n{heading}\n\n", 1)[1]
    body = re.split(r"^#", body, maxsplit=1, flags=re.M)[0]  # up to the next heading
    section = next(b for b in body.split("\n\n") if b.startswith("|"))  # the table, after any description
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
    _, rows = table_rows(md, "eSTOI")
    assert rows == [
        ["unprocessed", "–", "–", "0.510 ± 0.010", "0.510 ± 0.010", "0.510 ± 0.010"],
        ["generalist", "small", "1.0 k", "0.620 ± 0.020", "0.630 ± 0.020", "0.710 ± 0.010"],
        ["pseudo_se_dp", "small", "1.0 k", "0.750 ± 0.000 (n=1)", "n.s.", "–"],
        ["pseudo_se_dp", "large", "1.50 M", "0.810 ± 0.010", "–", "–"],
    ]

    # Per target speaker: one sub-table each for SI-SDRi, PESQ-WB and eSTOI, same rows.
    assert "Mean over each target speaker's test mixtures, for SI-SDRi (dB), PESQ-WB, eSTOI." in md
    per_speaker = {}
    for title in ("SI-SDRi (dB)", "PESQ-WB", "eSTOI"):
        header, rows = table_rows(md.split("\n## Per target speaker\n", 1)[1], title, level=3)
        assert header == ["Method", "Size", "Setting", "spk1", "spk2"]
        assert len(rows) == 1 + 3 + 2 + 1  # unprocessed + generalist x3 + small x2 + large x1
        per_speaker[title] = {tuple(r[:3]): r[3:] for r in rows}
    small_3s = ("pseudo_se_dp", "small", "Few-shot 3 s")
    assert per_speaker["SI-SDRi (dB)"][small_3s] == ["8.50", "–"]
    assert per_speaker["PESQ-WB"][small_3s] == ["2.20", "–"]
    assert per_speaker["eSTOI"][small_3s] == ["n.s.", "–"]
    assert per_speaker["PESQ-WB"][("unprocessed", "–", "–")] == ["1.20", "1.20"]
    assert per_speaker["eSTOI"][("generalist", "small", "Zero-shot")] == ["0.600", "0.640"]
    assert per_speaker["eSTOI"][("pseudo_se_dp", "large", "Zero-shot")] == ["0.800", "0.820"]
    assert "Not scored" not in md  # every metric was scored somewhere
    assert results_metrics(md) == ["si_sdri", "pesq", "estoi", "si_sdr"]

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
    for spk, base, e0 in (("spk1", 4.0, 0.70), ("spk2", 6.0, 0.72)):
        write_summary(exp, f"generalist_cpu/zsl/{spk}", base, 1.5, estoi=e0)
        # The refined embedding gains SI-SDRi but loses eSTOI: the table must show both.
        for enroll, shift in (("clean", 1.0), ("short", 0.0), ("noisy", -0.5)):
            cond = f"conditioned_cpu/enroll/{enroll}"
            write_summary(exp, f"{cond}_static/{spk}", base + shift, 1.6, estoi=e0 + 0.05)
            write_summary(exp, f"{cond}_hoploop/{spk}", base + shift - 0.25, 1.6, estoi=e0 + 0.04)
            write_summary(exp, f"{cond}_refined/{spk}", base + shift + 0.5, 1.7, estoi=e0 + 0.02)
            write_summary(exp, f"{cond}_refined_input/{spk}", base + shift + 0.1, 1.6, estoi=e0 + 0.03)
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
    title = "Speaker-conditioned generalist: static vs refined embedding"
    assert "Each cell: SI-SDRi (dB) / PESQ-WB / eSTOI, the mean over target speakers" in md
    header, rows = table_rows(md, title)
    assert header[2:] == ["static", "hop loop, e_0 only", "refined", "refined from the input",
                          "refined − hop loop", "updates accepted"]
    assert rows[0] == ["cpu", "none (unconditioned generalist)", "5.00 / 1.50 / 0.710", "–", "–", "–", "–", "–"]
    assert [r[1] for r in rows[1:]] == ["clean", "short", "noisy"]
    assert rows[1][2:] == ["6.00 / 1.60 / 0.760", "5.75 / 1.60 / 0.750", "6.50 / 1.70 / 0.730",
                           "6.10 / 1.60 / 0.740", "+0.75 / +0.10 / -0.020", "60 %"]
    assert rows[3][2:6] == ["4.50 / 1.60 / 0.760", "4.25 / 1.60 / 0.750", "5.00 / 1.70 / 0.730",
                            "4.60 / 1.60 / 0.740"]
    _, rows = table_rows(md, "Speaker verification (EER)")
    assert rows[0][:4] == ["teacher", "whole utterance", "1.0", "20.0"]
    assert ["student", "first 2 s", "–", "30.0", "5 / 5"] in rows
    assert "| student | 152,432 | 6.6 |" in md and "student 4.40 %" in md


def test_metrics_that_were_not_scored_are_named(tmp_path):
    """Summaries without PESQ/eSTOI (score --metrics si_sdr): the tables say so, no blank columns."""
    exp = tmp_path / "exp"
    for spk, base, pesq in (("spk1", 4.0, 1.5), ("spk2", 6.0, 1.7)):
        write_summary(exp, f"unprocessed/{spk}", 0.0)
        write_summary(exp, f"generalist_cpu/zsl/{spk}", base, pesq=pesq)  # PESQ only, no eSTOI
        write_summary(exp, f"conditioned_cpu/enroll/clean_static/{spk}", base + 1.0, pesq=1.6)
        write_summary(exp, f"conditioned_cpu/enroll/clean_refined/{spk}", base + 1.5)  # no PESQ here
    md = make_results(exp, tmp_path / "RESULTS.md").read_text()
    note = "Not scored: eSTOI (no score summary has it; `espnet2_pse.bin.score` computes every metric"
    assert md.count(note) == 3  # intro, per-speaker tables, conditioned table
    assert "## eSTOI" not in md and "### eSTOI" not in md and "estoi" not in results_metrics(md)

    # PESQ exists for some models only: the others show "n.s.".
    _, rows = table_rows(md, "PESQ-WB")
    assert rows == [["unprocessed", "–", "–", "n.s."], ["generalist", "cpu", "–", "1.60 ± 0.10"]]
    _, rows = table_rows(md.split("\n## Per target speaker\n", 1)[1], "PESQ-WB", level=3)
    assert rows == [["unprocessed", "–", "–", "n.s.", "n.s."], ["generalist", "cpu", "Zero-shot", "1.50", "1.70"]]

    assert "Each cell: SI-SDRi (dB) / PESQ-WB, the mean" in md
    _, rows = table_rows(md, "Speaker-conditioned generalist: static vs refined embedding")
    assert rows[0][2] == "5.00 / 1.60"  # the unconditioned reference
    assert rows[1][2:] == ["6.00 / 1.60", "–", "6.50 / n.s.", "–", "–", "–"]


def test_interferer_condition_is_its_own_section(exp, tmp_path, caplog):
    """Summaries under exp/interferer/ (the test_interferer sets) become the "Interfering talker"
    section, with the same table layout, and never mix into the noise-only tables."""
    write_summary(exp, "interferer/unprocessed/spk1", 0.0, 1.1, estoi=0.40)
    write_summary(exp, "interferer/pseudo_se_dp_large/zsl/spk1", 3.0, 1.3, estoi=0.55)
    with caplog.at_level(logging.WARNING):
        md = make_results(exp, tmp_path / "RESULTS.md").read_text()
    assert "interferer/unprocessed" not in caplog.text  # not a malformed <method>_<size> dir of the main grid
    main_part, interferer = md.split("\n## Interfering talker\n")
    _, rows = table_rows(main_part, "SI-SDRi (dB)")
    assert ["pseudo_se_dp", "large", "1.50 M", "11.00 ± 1.00", "–", "–"] in rows  # noise only: 10 and 12
    _, rows = table_rows("\n" + interferer, "SI-SDRi (dB)", level=3)
    assert [r[0] for r in rows] == ["unprocessed", "pseudo_se_dp"] and rows[1][3] == "3.00 ± 0.00"
    assert "#### PESQ-WB" in interferer  # per-speaker tables one level down
