import numpy as np
import pytest
import torch

from espnet2_pse.losses.distances import (
    distance,
    frame_signal,
    framewise_distance,
    si_sdr,
    weighted_frame_mean,
)

FRAME, HOP = 1024, 256


def _signals(batch=3, length=4000, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.standard_normal((batch, length)) + 0.3  # non-zero mean on purpose
    est = ref + 0.5 * rng.standard_normal((batch, length)) - 0.2
    return est, ref


def _np_snr(e, r):
    e, r = e - e.mean(), r - r.mean()
    return 10 * np.log10(np.sum(r**2) / np.sum((e - r) ** 2))


def _np_sisdr(e, r):
    e, r = e - e.mean(), r - r.mean()
    t = np.dot(e, r) / np.dot(r, r) * r
    return 10 * np.log10(np.sum(t**2) / np.sum((e - t) ** 2))


def _np_frames(x):
    x = np.pad(x - x.mean(), FRAME // 2, mode="reflect")
    n = np.arange(FRAME)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / FRAME)  # periodic Hann
    return [x[s : s + FRAME] * window for s in range(0, len(x) - FRAME + 1, HOP)]


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


@pytest.mark.parametrize("name", ["snr", "sisdr", "mse"])
def test_distance_matches_numpy(name):
    est, ref = _signals()
    got = distance(name, _t(est), _t(ref)).numpy()
    if name == "snr":
        want = [-_np_snr(e, r) for e, r in zip(est, ref)]
    elif name == "sisdr":
        want = [-_np_sisdr(e, r) for e, r in zip(est, ref)]
    else:
        want = [np.mean((e - r) ** 2) for e, r in zip(est, ref)]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_snr_ignores_mean_and_sisdr_ignores_scale():
    est, ref = _signals()
    base = distance("snr", _t(est), _t(ref))
    shifted = distance("snr", _t(est + 5.0), _t(ref - 3.0))
    torch.testing.assert_close(base, shifted)
    scaled = distance("sisdr", _t(3.0 * est), _t(ref))
    torch.testing.assert_close(distance("sisdr", _t(est), _t(ref)), scaled)
    # SNR is not scale-invariant: a 3x estimate is a worse SNR estimate here.
    assert torch.all(distance("snr", _t(3.0 * est), _t(ref)) > base)
    torch.testing.assert_close(si_sdr(_t(est), _t(ref)), -distance("sisdr", _t(est), _t(ref)))


def test_perfect_estimate_is_finite_and_very_low():
    _, ref = _signals()
    value = distance("snr", _t(ref), _t(ref))
    assert torch.all(torch.isfinite(value)) and torch.all(value < -60)


@pytest.mark.parametrize("length", [4000, 4096, 1000])
@pytest.mark.parametrize("name", ["snr", "sisdr", "mse"])
def test_framewise_matches_manual_loop(name, length):
    est, ref = _signals(batch=2, length=length, seed=1)
    got = framewise_distance(name, _t(est), _t(ref), FRAME, HOP).numpy()
    assert got.shape == (2, length // HOP + 1)
    for b in range(2):
        want = []
        for e, r in zip(_np_frames(est[b]), _np_frames(ref[b])):
            if name == "snr":
                want.append(-10 * np.log10(np.sum(r**2) / np.sum((e - r) ** 2)))
            elif name == "sisdr":
                t = np.dot(e, r) / np.dot(r, r) * r
                want.append(-10 * np.log10(np.sum(t**2) / np.sum((e - t) ** 2)))
            else:
                want.append(np.sum((e - r) ** 2) / FRAME)
        np.testing.assert_allclose(got[b], want, rtol=1e-6, atol=1e-6)


def test_frame_signal_count_and_error():
    x = torch.randn(2, 16000)
    assert frame_signal(x).shape == (2, 16000 // 256 + 1, 1024)
    with pytest.raises(ValueError, match="too short"):
        frame_signal(torch.randn(1, 400))


def test_inputs_not_modified():
    est, ref = _signals()
    est_t, ref_t = _t(est), _t(ref)
    for name in ("snr", "sisdr", "mse"):
        distance(name, est_t, ref_t)
        framewise_distance(name, est_t, ref_t)
    np.testing.assert_array_equal(est_t.numpy(), est)
    np.testing.assert_array_equal(ref_t.numpy(), ref)


def test_weighted_frame_mean_is_not_renormalised_and_detaches():
    losses = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    weights = torch.tensor([[1.0, 0.0, 0.5, 0.0]], requires_grad=True)
    out = weighted_frame_mean(losses, weights)
    # mean_t(w_t l_t) = (1 + 0 + 1.5 + 0) / 4, not divided by sum(w) = 1.5
    assert out.item() == pytest.approx(2.5 / 4)
    out.sum().backward()
    assert weights.grad is None
    torch.testing.assert_close(losses.grad, weights.detach() / 4)
    assert weighted_frame_mean(losses, None).item() == pytest.approx(2.5)
    with pytest.raises(ValueError, match="same framing"):
        weighted_frame_mean(losses, torch.ones(1, 3))


def test_bad_arguments_are_named():
    x = torch.randn(2, 2000)
    with pytest.raises(ValueError, match="'sdr'"):
        distance("sdr", x, x)
    with pytest.raises(ValueError, match="same shape"):
        framewise_distance("snr", x, x[:, :1500])


@pytest.mark.parametrize("name, atol", [("cspec", 0.05), ("erb", 0.01)])
def test_compressed_distances_floor_and_gain(name, atol):
    """Identical signals: the floor; a gain g moves every compressed magnitude (cspec's complex
    term too) by g**0.3, so the distance is -20 log10 |1 - g**0.3| dB."""
    from espnet2_pse.losses.distances import SPEC_COMPRESSION

    ref = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 8000)))
    assert (distance(name, ref, ref) < -60).all()
    gain = 0.5
    expected = -20 * np.log10(1 - gain**SPEC_COMPRESSION)
    np.testing.assert_allclose(distance(name, gain * ref, ref).numpy(), -expected, atol=atol)


def test_cspec_follows_the_compressed_spectra():
    """More noise is worse; silence gives finite gradients."""
    rng = np.random.default_rng(1)
    ref = torch.from_numpy(rng.standard_normal((2, 8000)))
    noise = torch.from_numpy(rng.standard_normal((2, 8000)))
    assert (distance("cspec", ref + 0.3 * noise, ref) > distance("cspec", ref + 0.1 * noise, ref)).all()
    est = torch.zeros(1, 4000, requires_grad=True)
    distance("cspec", est, torch.from_numpy(rng.standard_normal((1, 4000)))).sum().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_cspec_has_no_segmental_version_and_needs_a_frame():
    from espnet2_pse.losses.criterions import PSEDistanceLoss

    with pytest.raises(ValueError, match="no segmental version"):
        PSEDistanceLoss(distance="cspec", segmental=True)
    with pytest.raises(ValueError, match="no segmental version"):
        framewise_distance("cspec", torch.zeros(1, 4000), torch.zeros(1, 4000))
    with pytest.raises(ValueError, match="longer than 512 samples"):
        distance("cspec", torch.zeros(1, 300), torch.zeros(1, 300))


def _band_limited(rng, shape, low_hz, high_hz, fs=16000):
    """White noise kept between low_hz and high_hz, scaled to unit power."""
    spectrum = np.fft.rfft(rng.standard_normal(shape))
    freqs = np.fft.rfftfreq(shape[-1], 1 / fs)
    spectrum[..., (freqs < low_hz) | (freqs >= high_hz)] = 0
    x = np.fft.irfft(spectrum, n=shape[-1])
    return torch.from_numpy(x / x.std(axis=-1, keepdims=True))


def test_erb_weighs_the_bands_where_speech_lives():
    """An error of the same energy costs more below 1 kHz than above 4 kHz (more ERB bands
    there), unlike in cspec, which has more bins above; finite gradients for a near-silent
    estimate, and a minimum length."""
    rng = np.random.default_rng(2)
    ref = torch.from_numpy(rng.standard_normal((2, 8000)))
    low, high = 0.3 * _band_limited(rng, (2, 8000), 100, 1000), 0.3 * _band_limited(rng, (2, 8000), 4000, 8000)
    assert (distance("erb", ref + low, ref) > distance("erb", ref + high, ref) + 3).all()
    assert (distance("cspec", ref + low, ref) < distance("cspec", ref + high, ref)).all()
    est = (1e-7 * torch.from_numpy(rng.standard_normal((1, 4000)))).requires_grad_()
    distance("erb", est, torch.from_numpy(rng.standard_normal((1, 4000)))).sum().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="erb needs signals longer than 256 samples"):
        distance("erb", torch.zeros(1, 200), torch.zeros(1, 200))


def _modulated_noise(rng, batch, seconds=1.5, fs=16000):
    """Noise under a 4-Hz syllable-like envelope: eSTOI needs envelopes that move."""
    t = np.arange(int(seconds * fs)) / fs
    envelope = 0.1 + np.maximum(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6, (batch, 1))), 0)
    return envelope * rng.standard_normal((batch, t.size))


def test_estoi_proxy_agrees_with_pystoi():
    """The proxy is scale-free and is -1 for a copy of the reference; over added noise it falls
    as pystoi's eSTOI falls, within 0.15 of it (it keeps the silent frames that eSTOI drops)."""
    from pystoi import stoi

    rng = np.random.default_rng(2)
    ref = _modulated_noise(rng, 2)
    ref_t = torch.from_numpy(ref)
    np.testing.assert_allclose(distance("estoi", 0.3 * ref_t, ref_t).numpy(), -1.0, atol=1e-4)
    proxy, reference = [], []
    for level in (0.1, 0.5, 1.0, 2.0):
        est = ref + level * rng.standard_normal(ref.shape)
        proxy.append(-distance("estoi", torch.from_numpy(est), ref_t).numpy())
        reference.append([stoi(r, e, 16000, extended=True) for r, e in zip(ref, est)])
    proxy, reference = np.array(proxy), np.array(reference)
    assert (np.diff(proxy, axis=0) < 0).all() and (np.diff(reference, axis=0) < 0).all()
    np.testing.assert_allclose(proxy, reference, atol=0.15)


def test_estoi_needs_a_segment_and_has_finite_gradients():
    from espnet2_pse.losses.criterions import PSEDistanceLoss

    with pytest.raises(ValueError, match="no segmental version"):
        PSEDistanceLoss(distance="estoi", segmental=True)
    with pytest.raises(ValueError, match="at least 6355 samples"):
        distance("estoi", torch.zeros(1, 6000), torch.zeros(1, 6000))
    rng = np.random.default_rng(3)
    ref = torch.from_numpy(_modulated_noise(rng, 1))
    for start in (torch.zeros_like(ref), ref + torch.from_numpy(rng.standard_normal(ref.shape))):
        est = start.clone().requires_grad_(True)
        PSEDistanceLoss(distance="estoi")(ref, est).sum().backward()
        assert torch.isfinite(est.grad).all()
    assert est.grad.abs().sum() > 0
