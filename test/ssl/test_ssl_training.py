"""One real epoch of pse_train per SSL objective (with and without DP) on tiny data.

Switching objective, or adding DP, is only a YAML change: every run below shares one base
config and differs in ``ssl_objective`` / ``ssl_objective_conf`` / ``criterions``.
"""

import copy

import pytest
import torch
import yaml

from espnet2_pse.tasks.pse import PSETask
from espnet2_pse.tasks.snr_predictor import SNRPredictorTask

BASE = {
    "encoder": "conv",
    "encoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "decoder": "conv",
    "decoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
    "separator": "conv_tasnet_skip",
    "separator_conf": {"layer": 2, "stack": 1, "bottleneck_dim": 8, "hidden_dim": 16, "skip_dim": 8},
    "criterions": [
        {"name": "pse_distance", "conf": {"distance": "snr"}, "wrapper": "fixed_order", "wrapper_conf": {"weight": 1.0}}
    ],
    "iterator_type": "chunk",
    "chunk_length": 8000,
    "batch_type": "unsorted",
    "batch_size": 4,
    "max_epoch": 1,
    "num_workers": 0,
    "optim": "adam",
    "optim_conf": {"lr": 1.0e-3},
    "use_tensorboard": False,
    "use_matplotlib": False,
    "best_model_criterion": [["valid", "loss", "min"]],
}
DP_CRITERION = [
    {"name": "pse_distance", "conf": {"distance": "snr", "segmental": True}, "wrapper": "dp_fixed_order", "wrapper_conf": {"weight": 1.0}}
]


@pytest.fixture(scope="module")
def snr_predictor(tmp_path_factory):
    """A small untrained SNR predictor saved the way its training task saves one."""
    out = tmp_path_factory.mktemp("snr_predictor")
    SNRPredictorTask.main(cmd=[
        "--dry_run", "true", "--output_dir", str(out), "--predictor_conf", "hidden_size=8",
        "--predictor_conf", "num_layers=1",
        "--train_data_path_and_name_and_type", "x,speech,sound", "--train_shape_file", "x",
        "--valid_data_path_and_name_and_type", "x,speech,sound", "--valid_shape_file", "x",
    ])
    model, _ = SNRPredictorTask.build_model_from_file(out / "config.yaml", None, "cpu")
    torch.save(model.state_dict(), out / "model.pth")
    return {"config": str(out / "config.yaml"), "model_file": str(out / "model.pth")}


def train(tmp_path, tiny_corpus, objective, objective_conf, criterions=None):
    config = copy.deepcopy(BASE)
    config.update(ssl_objective=objective, ssl_objective_conf=objective_conf)
    if criterions is not None:
        config["criterions"] = criterions
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    data = tiny_corpus["dir"]
    PSETask.main(cmd=[
        "--config", str(tmp_path / "config.yaml"),
        "--train_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
        "--train_shape_file", f"{data}/spk1.scp",
        "--valid_data_path_and_name_and_type", f"{data}/wav.scp,speech_mix,sound",
        "--valid_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
        "--valid_shape_file", f"{data}/wav.scp",
        "--output_dir", str(tmp_path / "exp"),
    ])
    return tmp_path / "exp"


@pytest.mark.parametrize("objective", ["pseudo_se", "contrastive_mixtures"])
@pytest.mark.parametrize("dp", [False, True], ids=["plain", "dp"])
def test_one_epoch_per_objective(tmp_path, tiny_corpus, snr_predictor, objective, dp):
    conf = {"inject_noise_scp": str(tiny_corpus["noise_scp"]), "premix_noise_scp": str(tiny_corpus["noise_scp"])}
    if dp:
        conf["dp_predictor"] = snr_predictor
    predictor_before = torch.load(snr_predictor["model_file"])
    exp = train(tmp_path, tiny_corpus, objective, conf, DP_CRITERION if dp else None)

    state = torch.load(exp / "1epoch.pth")
    base_keys = set(PSETask.build_model_from_file(exp / "config.yaml", None, "cpu")[0].state_dict())
    # Nothing of the objective (noise banks, DP predictor) enters the saved model.
    assert set(state) == base_keys and not any("predictor" in k for k in state)
    assert all(torch.isfinite(v).all() for v in state.values())
    assert yaml.safe_load((exp / "config.yaml").read_text())["ssl_objective"] == objective
    # The frozen predictor is unchanged by training.
    after = torch.load(snr_predictor["model_file"])
    assert all(torch.equal(predictor_before[k], after[k]) for k in after)


def test_dp_with_an_unweighted_wrapper_is_refused(tmp_path, tiny_corpus, snr_predictor):
    conf = {"inject_noise_scp": str(tiny_corpus["noise_scp"]), "dp_predictor": snr_predictor}
    with pytest.raises(ValueError, match="dp_fixed_order"):
        train(tmp_path, tiny_corpus, "pseudo_se", conf)


def test_unknown_objective_option_names_the_key(tmp_path, tiny_corpus):
    with pytest.raises(ValueError, match="ssl_objective_conf for 'pseudo_se'.*lambda_positive"):
        train(tmp_path, tiny_corpus, "pseudo_se", {"inject_noise_scp": "x", "lambda_positive": 1.0})
