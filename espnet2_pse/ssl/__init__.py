"""Self-supervised personalization objectives (registered as ``--ssl_objective`` choices)."""


def register_classes(register):
    """Call ``register(choices, name, cls)`` for every class this subpackage provides."""
    from espnet2_pse.ssl.abs_objective import ssl_objective_choices
    from espnet2_pse.ssl.contrastive_mixtures import ContrastiveMixtures
    from espnet2_pse.ssl.pseudo_se import PseudoSE

    register(ssl_objective_choices, "pseudo_se", PseudoSE)
    register(ssl_objective_choices, "contrastive_mixtures", ContrastiveMixtures)
