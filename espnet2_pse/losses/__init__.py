"""Distances, criteria and loss wrappers of the PSE objectives, registered into ESPnet."""


def register_classes(register):
    """Call ``register(choices, name, cls)`` for every class this subpackage provides."""
    from espnet2.tasks.enh import criterion_choices, loss_wrapper_choices

    from espnet2_pse.losses.criterions import PSEDistanceLoss
    from espnet2_pse.losses.wrappers import DPWeightedFixedOrder

    register(criterion_choices, "pse_distance", PSEDistanceLoss)
    register(loss_wrapper_choices, "dp_fixed_order", DPWeightedFixedOrder)
