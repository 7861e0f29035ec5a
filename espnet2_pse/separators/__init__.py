"""Classes of this subpackage that espnet2_pse registers into ESPnet."""


def register_classes(register):
    """Call ``register(choices, name, cls)`` for every class this subpackage provides."""
    from espnet2.tasks.enh import separator_choices

    from espnet2_pse.separators.conv_tasnet_skip import ConvTasNetSkip
    from espnet2_pse.separators.gru_mask import GRUMaskNet

    register(separator_choices, "conv_tasnet_skip", ConvTasNetSkip)
    register(separator_choices, "gru_mask", GRUMaskNet)
    from espnet2_pse.separators.pconv_tasnet import PConvTasNet
    register(separator_choices, "pconv_tasnet", PConvTasNet)
