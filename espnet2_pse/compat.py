"""Quiet, fast import of the ESPnet modules espnet2_pse builds on.

``espnet2.tasks.enh`` imports ``g2p_en`` at module level (through the text preprocessors) but
only uses ``g2p_en.G2p`` when a g2p tokenizer is built. Executing ``g2p_en`` loads NLTK and
inflect (about 4 s) and, when its NLTK data is missing, tries to download it, which offline
prints a screen of errors. We put a stand-in module in ``sys.modules`` whose first attribute
access imports the real ``g2p_en``, so TTS/ASR users of g2p see no difference.

The import also prints ESPnet's own start-up chatter: a flash-attn notice on stdout from one
module, muted while that module alone is imported (muting stdout around the whole import would
capture the ``sys.stdout`` that some functions bind as a default argument), and
``torch.cuda.amp`` FutureWarnings, filtered for the duration of the import.
"""

import contextlib
import importlib
import importlib.util
import io
import sys
import types
import warnings


def _defer_module(name: str) -> None:
    """Make ``import name`` cheap until an attribute of the module is first used."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return  # not installed: ESPnet's own import raises its usual error

    stand_in = types.ModuleType(name, f"Stand-in for {name}, imported on first use.")
    # A real spec makes `import name` treat the stand-in as an initialised module; the other
    # module attributes keep tools that probe sys.modules (pytest, inspect) from loading it.
    stand_in.__spec__ = spec
    stand_in.__loader__ = spec.loader
    stand_in.__file__ = spec.origin
    stand_in.__package__ = spec.parent
    if spec.submodule_search_locations is not None:
        stand_in.__path__ = list(spec.submodule_search_locations)

    def load_attribute(attribute: str):
        if attribute.startswith("__") and attribute.endswith("__"):
            # Probes such as hasattr(module, "__wrapped__") must not trigger the real import.
            raise AttributeError(attribute)
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        real = importlib.import_module(name)
        return getattr(real, attribute)

    stand_in.__getattr__ = load_attribute  # module-level __getattr__ (PEP 562)
    sys.modules[name] = stand_in


def import_espnet_quietly() -> None:
    """Import the ESPnet enhancement task with g2p_en deferred and its start-up noise muted."""
    # torch's import walks sys.modules and reads module attributes, which would load the
    # deferred module at once: import it first.
    import torch  # noqa: F401

    _defer_module("g2p_en")
    if "espnet2.tasks.enh" in sys.modules:
        return
    with contextlib.redirect_stdout(io.StringIO()):
        importlib.import_module("espnet.nets.pytorch_backend.transformer.attention")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"espnet2?\.")
        importlib.import_module("espnet2.tasks.enh")
