import espnet2_pse  # noqa: F401, I001  (first: quiet ESPnet import, registers the classes)
import pytest
import torch
import yaml
from espnet2.enh.loss.wrappers.fixed_order import FixedOrderSolver
from espnet2.tasks.enh import EnhancementTask, criterion_choices, loss_wrapper_choices

from espnet2_pse.losses.criterions import PSEDistanceLoss
from espnet2_pse.losses.distances import distance, framewise_distance
from espnet2_pse.losses.wrappers import DPWeightedFixedOrder


def _pair(batch=4, length=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch, length, generator=g)
    est = ref + 0.7 * torch.randn(batch, length, generator=g)
    return est, ref


def test_registered_names():
    assert criterion_choices.get_class("pse_distance") is PSEDistanceLoss
    assert loss_wrapper_choices.get_class("dp_fixed_order") is DPWeightedFixedOrder


def test_criterion_values_and_names():
    est, ref = _pair()
    plain = PSEDistanceLoss(distance="sisdr")
    assert plain.name == "pse_sisdr"
    torch.testing.assert_close(plain(ref, est), distance("sisdr", est, ref))
    seg = PSEDistanceLoss(distance="snr", segmental=True)
    assert seg.name == "pse_snr_seg"
    frames = seg.framewise(ref, est)
    assert frames.shape == (4, 3000 // 256 + 1)
    torch.testing.assert_close(frames, framewise_distance("snr", est, ref))
    torch.testing.assert_close(seg(ref, est), frames.mean(-1))
    assert PSEDistanceLoss(is_noise_loss=True).name == "pse_snr_noise"
    with pytest.raises(ValueError, match="'distance'"):
        PSEDistanceLoss(distance="l1")


@pytest.mark.parametrize("conf", [{"distance": "snr"}, {"distance": "mse", "segmental": True}])
@pytest.mark.parametrize("num_spk", [1, 2])
def test_without_dp_weight_equals_espnet_fixed_order(conf, num_spk):
    pairs = [_pair(seed=s) for s in range(num_spk)]
    ref = [r for _, r in pairs]
    inf = [e for e, _ in pairs]
    criterion = PSEDistanceLoss(**conf)
    ours, our_stats, our_others = DPWeightedFixedOrder(criterion)(ref, inf, {})
    theirs, their_stats, their_others = FixedOrderSolver(criterion)(ref, inf, {})
    torch.testing.assert_close(ours, theirs)
    assert our_stats.keys() == their_stats.keys()
    torch.testing.assert_close(our_stats[criterion.name], their_stats[criterion.name])
    assert torch.equal(our_others["perm"], their_others["perm"])


def test_frame_weights_follow_dp_formula_and_get_no_gradient():
    est, ref = _pair()
    est.requires_grad_(True)
    criterion = PSEDistanceLoss(segmental=True)
    weights = torch.rand(4, 3000 // 256 + 1, requires_grad=True)
    loss, stats, _ = DPWeightedFixedOrder(criterion)([ref], [est], {"dp_weight": weights})
    want = (weights.detach() * framewise_distance("snr", est, ref)).mean(-1).mean()
    torch.testing.assert_close(loss, want)
    assert stats["pse_snr_seg"].item() == pytest.approx(loss.item())
    loss.backward()
    assert est.grad is not None and weights.grad is None
    # Zero weights on every frame: no gradient to the estimate either.
    est.grad = None
    zeros = {"dp_weight": torch.zeros_like(weights)}
    zero, _, _ = DPWeightedFixedOrder(criterion)([ref], [est], zeros)
    zero.backward()
    assert torch.count_nonzero(est.grad) == 0


def test_example_weights_and_per_source_lists():
    (e1, r1), (e2, r2) = _pair(seed=1), _pair(seed=2)
    criterion = PSEDistanceLoss()
    w = torch.tensor([1.0, 0.0, 0.5, 2.0])
    loss, _, _ = DPWeightedFixedOrder(criterion)([r1, r2], [e1, e2], {"dp_weight": w})
    want = ((w * criterion(r1, e1)).mean() + (w * criterion(r2, e2)).mean()) / 2
    torch.testing.assert_close(loss, want)
    w2 = torch.tensor([0.0, 1.0, 1.0, 1.0])
    loss, _, _ = DPWeightedFixedOrder(criterion)([r1, r2], [e1, e2], {"dp_weight": [w, w2]})
    want = ((w * criterion(r1, e1)).mean() + (w2 * criterion(r2, e2)).mean()) / 2
    torch.testing.assert_close(loss, want)


def test_teacher_reference_replaces_the_target_when_the_batch_has_one():
    est, ref = _pair()
    teacher = ref + 0.1
    criterion = PSEDistanceLoss(distance="cspec")
    wrapper = DPWeightedFixedOrder(criterion, reference="teacher")
    with_teacher = wrapper([ref], [est], {"teacher_reference": teacher})[0]
    torch.testing.assert_close(with_teacher, criterion(teacher, est).mean())
    # Without one (validation on real mixtures) it scores against the given reference.
    torch.testing.assert_close(wrapper([ref], [est], {})[0], criterion(ref, est).mean())
    assert not torch.allclose(with_teacher, criterion(ref, est).mean())
    with pytest.raises(ValueError, match="reference 'student' is not one of"):
        DPWeightedFixedOrder(criterion, reference="student")


def test_weight_errors_name_the_problem():
    est, ref = _pair()
    frames = torch.ones(4, 3000 // 256 + 1)
    with pytest.raises(ValueError, match="segmental: true"):
        DPWeightedFixedOrder(PSEDistanceLoss())([ref], [est], {"dp_weight": frames})
    with pytest.raises(ValueError, match="same framing"):
        wrapper = DPWeightedFixedOrder(PSEDistanceLoss(segmental=True))
        wrapper([ref], [est], {"dp_weight": frames[:, :-1]})
    with pytest.raises(ValueError, match="batch of 4"):
        DPWeightedFixedOrder(PSEDistanceLoss())([ref], [est], {"dp_weight": torch.ones(3)})
    with pytest.raises(ValueError, match="2 weight tensors for 1 sources"):
        DPWeightedFixedOrder(PSEDistanceLoss())([ref], [est], {"dp_weight": [frames, frames]})


def _enh_model(tmp_path):
    """An ESPnetEnhancementModel built by EnhancementTask from a YAML config."""
    config = {
        "encoder": "conv",
        "encoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
        "decoder": "conv",
        "decoder_conf": {"channel": 16, "kernel_size": 16, "stride": 8},
        "separator": "tcn",
        "separator_conf": {
            "num_spk": 1,
            "layer": 2,
            "stack": 1,
            "bottleneck_dim": 8,
            "hidden_dim": 16,
        },
        "criterions": [
            {
                "name": "pse_distance",
                "conf": {"distance": "snr", "segmental": True},
                "wrapper": "dp_fixed_order",
                "wrapper_conf": {"weight": 1.0},
            },
            # Weight 0: logged only, computed under no_grad by ESPnet.
            {
                "name": "si_snr",
                "conf": {},
                "wrapper": "fixed_order",
                "wrapper_conf": {"weight": 0.0},
            },
        ],
    }
    path = tmp_path / "enh.yaml"
    path.write_text(yaml.safe_dump(config))
    args = EnhancementTask.get_parser().parse_args(["--config", str(path)])
    return EnhancementTask.build_model(args)


def test_inside_espnet_enhancement_model(tmp_path):
    torch.manual_seed(0)
    model = _enh_model(tmp_path)
    mix, ref = _pair(batch=2, length=4000)
    lengths = torch.full((2,), 4000)
    speech_pre, feature_mix, feature_pre, others = model.forward_enhance(mix, lengths)
    weights = torch.rand(2, 4000 // 256 + 1)
    loss, stats, weight, perm = model.forward_loss(
        speech_pre, lengths, feature_mix, feature_pre, {**others, "dp_weight": weights}, [ref]
    )
    want = (weights * framewise_distance("snr", speech_pre[0], ref)).mean()
    torch.testing.assert_close(loss.squeeze(), want)  # force_gatherable makes it (1,)
    assert {"pse_snr_seg", "si_snr_loss", "loss"} <= set(stats)
    assert perm.shape == (2, 1)
    loss.backward()
    grads = [p.grad for p in model.separator.parameters() if p.grad is not None]
    assert grads and any(torch.count_nonzero(g) > 0 for g in grads)

    # Without weights the model's own forward gives the plain segmental loss.
    model.zero_grad()
    plain, stats, _ = model(mix, lengths, speech_ref1=ref)
    want = framewise_distance("snr", speech_pre[0].detach(), ref).mean()
    torch.testing.assert_close(plain.squeeze(), want)
