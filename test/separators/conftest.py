"""Helpers for the separator tests: build a full ESPnet enhancement model from a YAML config."""

import pytest
import yaml


def _build(tmp_path, config: dict, name: str = "config.yaml"):
    import espnet2_pse  # noqa: F401  (registers the separators)
    from espnet2.tasks.enh import EnhancementTask

    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    args = EnhancementTask.get_parser().parse_args(["--config", str(path)])
    return EnhancementTask.build_model(args)


@pytest.fixture
def build_enh_model(tmp_path):
    """Callable: YAML-able config dict -> ESPnetEnhancementModel built by EnhancementTask."""
    counter = iter(range(1000))
    return lambda config: _build(tmp_path, config, f"config{next(counter)}.yaml")
