"""Named size presets shared by the separators of this package.

A separator declares a table ``{preset name: {argument: value}}`` and its defaults for the
arguments a preset can set. :func:`resolve_sizes` merges the three sources (defaults, preset,
explicit arguments) and refuses contradictions, so a YAML that says ``preset: tiny`` together
with ``hidden_dim: 64`` fails loudly instead of silently training another model size.
"""

from typing import Any, Dict, Mapping, Optional


def resolve_sizes(
    owner: str,
    presets: Mapping[str, Mapping[str, Any]],
    preset: Optional[str],
    explicit: Mapping[str, Any],
    defaults: Mapping[str, Any],
) -> Dict[str, Any]:
    """Return the final size arguments of a separator.

    Args:
        owner: class name used in error messages.
        presets: table of preset name -> arguments it fixes.
        preset: the selected preset name, or None for no preset.
        explicit: size arguments as given by the caller; None means "not given".
        defaults: values used for arguments that neither the preset nor the caller sets.

    Returns:
        dict with a value for every key of ``defaults``.

    Raises:
        ValueError: unknown preset, or an explicit argument that contradicts the preset.
    """
    sizes = dict(defaults)
    if preset is not None:
        if preset not in presets:
            raise ValueError(
                f"{owner}: unknown preset '{preset}'; choose one of {sorted(presets)} "
                "or leave preset unset and give the sizes explicitly"
            )
        chosen = presets[preset]
        for key, value in explicit.items():
            if value is not None and key in chosen and value != chosen[key]:
                raise ValueError(
                    f"{owner}: {key}={value} contradicts preset '{preset}' "
                    f"({key}={chosen[key]}); drop one of them"
                )
        sizes.update(chosen)
    sizes.update({key: value for key, value in explicit.items() if value is not None})
    return sizes
