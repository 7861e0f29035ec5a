"""espnet2_pse: personalized speech enhancement on ESPnet2.

Importing this package registers its separators, criteria and objectives into ESPnet's
enhancement registries, so configs and packed models that name them load everywhere.
"""

from importlib import metadata

__version__ = "0.1.0"

REQUIRED_ESPNET = "202511"


def _check_espnet() -> None:
    try:
        found = metadata.version("espnet")
    except metadata.PackageNotFoundError:
        raise ImportError(
            f"espnet2_pse needs espnet=={REQUIRED_ESPNET}, which is not installed. "
            "Run `make -C tools` from the repository root to build the tested environment."
        ) from None
    if found != REQUIRED_ESPNET:
        raise ImportError(
            f"espnet2_pse is tested with espnet=={REQUIRED_ESPNET} but found espnet=={found}. "
            "Run `make -C tools` from the repository root to build the tested environment."
        )


_check_espnet()

from espnet2_pse import compat  # noqa: E402

compat.import_espnet_quietly()

from espnet2_pse import registry  # noqa: E402

registry.register_all()

from espnet2_pse.api import Enhancer, load, personalize  # noqa: E402

__all__ = ["Enhancer", "load", "personalize", "__version__"]
