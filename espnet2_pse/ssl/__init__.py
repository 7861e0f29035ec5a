"""Classes of this subpackage that espnet2_pse registers into ESPnet."""


def register_classes(register):
    """Call ``register(choices, name, cls)`` for every class this subpackage provides."""
