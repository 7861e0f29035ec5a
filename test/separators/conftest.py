"""Helpers for the separator tests: build a full ESPnet enhancement model from a YAML config;
fit a separator to a target."""

import pytest
import torch
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


def fit_relative_error(separator, x: torch.Tensor, target: torch.Tensor, steps: int = 150) -> float:
    """Train ``separator`` (Adam 1e-2) so that its first output on ``x`` approaches ``target``;
    the last relative squared error (1: no better than outputting zero)."""
    optimizer = torch.optim.Adam(separator.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = (separator(x, None)[0][0] - target).abs().pow(2).mean() / target.abs().pow(2).mean()
        loss.backward()
        optimizer.step()
    return loss.item()
