"""Registration of espnet2_pse classes into ESPnet's module-level ClassChoices.

ESPnet has no plugin discovery: its tasks build argparse choices from module-level
``ClassChoices`` objects when the parser is created. Adding our classes to those objects at
import time (``import espnet2_pse``) is therefore enough for ``--separator conv_tasnet_skip``
and friends to work in every enh-family task.

Each subpackage owns its own list through a ``register_classes(register)`` function, so adding
a class never means editing this file.
Learning-rate schedules go into ESPnet's ``scheduler_classes`` dict instead (``--scheduler``
has no ClassChoices), from :data:`espnet2_pse.schedulers.SCHEDULERS`.
"""

import importlib
from typing import Dict, List, Optional, Tuple

from espnet2.train.class_choices import ClassChoices

# Subpackages that contribute classes, in registration order.
_PROVIDERS = (
    "espnet2_pse.separators",
    "espnet2_pse.losses",
    "espnet2_pse.ssl",
    "espnet2_pse.spk",
)

# (id(choices), name) -> class, for idempotence checks.
_registered: Dict[Tuple[int, str], type] = {}


class RegistrationError(ValueError):
    """A class cannot be registered under the requested name."""


def _is_new(where: str, key: str, existing: Optional[type], cls: type) -> bool:
    """False when ``cls`` already holds ``key``; raises when another class does."""
    if existing is cls:
        return False
    if existing is not None:
        raise RegistrationError(
            f"{where}: '{key}' is already registered to "
            f"{existing.__module__}.{existing.__qualname__}; refusing to override it"
        )
    return True


def register(choices: ClassChoices, name: str, cls: type) -> None:
    """Add ``cls`` to ``choices`` under the lower-cased ``name``.

    ClassChoices only type-checks at construction, so the base class is re-checked here.
    Registering the same class under the same name again is a no-op; any other collision
    (a name ESPnet or another plugin already uses) raises instead of silently replacing it.
    """
    key = name.lower()
    if key != name:
        raise RegistrationError(
            f"{choices.name}: register '{key}', not '{name}': ESPnet looks up lower-case names"
        )
    if choices.base_type is not None and not (
        isinstance(cls, type) and issubclass(cls, choices.base_type)
    ):
        raise RegistrationError(
            f"{choices.name}: {cls!r} is not a subclass of {choices.base_type.__name__}"
        )
    if _is_new(choices.name, key, choices.classes.get(key), cls):
        choices.classes[key] = cls
    _registered[(id(choices), key)] = cls


def registered() -> List[Tuple[str, str, type]]:
    """(choices name, class name, class) of everything this package registered."""
    out = []
    for provider in _PROVIDERS:
        module = importlib.import_module(provider)
        seen: List[Tuple[ClassChoices, str, type]] = []
        module.register_classes(lambda c, n, k: seen.append((c, n, k)))
        out.extend((c.name, n, k) for c, n, k in seen)
    return out


def register_scheduler(name: str, cls: type) -> None:
    """Add ``cls`` to ESPnet's ``--scheduler`` choices (a plain dict, not a ClassChoices), with
    the same collision rule as :func:`register`."""
    from espnet2.tasks import abs_task

    if _is_new("scheduler", name, abs_task.scheduler_classes.get(name), cls):
        abs_task.scheduler_classes[name] = cls


def register_all() -> None:
    """Register every class of every provider, and our schedulers; safe to call more than once."""
    from espnet2_pse.schedulers import SCHEDULERS

    for provider in _PROVIDERS:
        importlib.import_module(provider).register_classes(register)
    for name, cls in SCHEDULERS.items():
        register_scheduler(name, cls)
