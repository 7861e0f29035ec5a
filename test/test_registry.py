"""Registration of espnet2_pse classes into ESPnet's ClassChoices."""

import subprocess
import sys

import pytest
import torch
from espnet2.enh.separator.abs_separator import AbsSeparator
from espnet2.tasks.enh import separator_choices
from espnet2.train.class_choices import ClassChoices

import espnet2_pse
from espnet2_pse import registry
from espnet2_pse.schedulers import OneCycleHoldLR
from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip


class _Dummy(AbsSeparator):
    def forward(self, input, ilens, additional=None):
        return [input], ilens, {}

    @property
    def num_spk(self):
        return 1


@pytest.fixture
def choices():
    return ClassChoices("thing", classes=dict(), type_check=AbsSeparator, default=None, optional=True)


def test_register_adds_lower_case_name_once(choices):
    registry.register(choices, "dummy", _Dummy)
    registry.register(choices, "dummy", _Dummy)  # idempotent
    assert choices.get_class("dummy") is _Dummy
    assert "dummy" in choices.choices()


def test_register_refuses_mixed_case(choices):
    with pytest.raises(registry.RegistrationError, match="lower-case"):
        registry.register(choices, "Dummy", _Dummy)


def test_register_refuses_wrong_base_class(choices):
    with pytest.raises(registry.RegistrationError, match="not a subclass of AbsSeparator"):
        registry.register(choices, "linear", torch.nn.Linear)


def test_register_refuses_collision_with_espnet_name():
    with pytest.raises(registry.RegistrationError, match="already registered"):
        registry.register(separator_choices, "tcn", _Dummy)
    assert separator_choices.get_class("tcn") is not _Dummy


def test_register_scheduler_refuses_espnet_names():
    with pytest.raises(registry.RegistrationError, match="'onecyclelr' is already registered"):
        registry.register_scheduler("onecyclelr", OneCycleHoldLR)


def test_register_all_is_idempotent_and_lists_our_classes():
    registry.register_all()
    registry.register_all()
    names = {(choice, name) for choice, name, _ in registry.registered()}
    assert ("separator", "conv_tasnet_skip") in names
    assert ("ssl_objective", "pseudo_se") in names
    assert separator_choices.get_class("conv_tasnet_skip") is ConvTasNetSkip


def test_print_config_and_argparse_choices_show_our_classes():
    proc = subprocess.run(
        [sys.executable, "-m", "espnet2_pse.bin.pse_train", "--print_config",
         "--separator", "conv_tasnet_skip", "--ssl_objective", "pseudo_se", "--scheduler", "onecyclehold"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "separator: conv_tasnet_skip" in proc.stdout
    assert "ssl_objective: pseudo_se" in proc.stdout
    assert "scheduler: onecyclehold" in proc.stdout
    # The import is quiet: no NLTK download attempts or ESPnet start-up chatter.
    assert "nltk_data" not in proc.stderr and "Flash Attention" not in proc.stdout + proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "espnet2_pse.bin.pse_train", "--print_config", "--separator", "nope"],
        capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "conv_tasnet_skip" in bad.stderr


def test_wrong_espnet_version_is_reported(monkeypatch):
    monkeypatch.setattr(espnet2_pse.metadata, "version", lambda name: "202402")
    with pytest.raises(ImportError, match="espnet==202511 but found espnet==202402"):
        espnet2_pse._check_espnet()
