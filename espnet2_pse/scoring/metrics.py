"""Per-utterance speech-enhancement metrics on 1-D float64 numpy signals.

All functions take ``(ref, est)`` in that order: ``ref`` is the clean target, ``est`` the
signal being judged (an enhanced output, or the unprocessed mixture). Signals are (T,) arrays
in the same units (any scale); sample rates are in Hz.

- SI-SDR (dB): scale-invariant signal-to-distortion ratio on zero-mean signals (Le Roux et
  al., 2019). The optimal scaling of ``ref`` is projected out, so scaling ``est`` by any
  non-zero factor leaves the value unchanged.
- SNR (dB): plain energy ratio ``|ref|^2 / |ref - est|^2``, no mean removal, no rescaling
  (the "SDR" the paper reports, asteroid's ``snr``).
- PESQ-WB: ITU-T P.862.2 wide band through the ``pesq`` package; 16 kHz only. PESQ fails on
  signals without detectable speech: the score is then NaN and a warning names the utterance.
- eSTOI: extended short-time objective intelligibility through ``pystoi``.
- DNSMOS P.835 and personalized DNSMOS (SIG / BAK / OVRL, MOS 1-5): reference-free, the DNS
  Challenge's models from the ``speechmos`` wheel (:mod:`espnet2_pse.scoring.dnsmos`); the
  personalized model rates a kept interfering talker as background. 16 kHz only.
- Speaker similarity: cosine of the pretrained GE2E embeddings (:mod:`espnet2_pse.spk.ge2e`)
  of the estimate and of the reference (or of an enrollment, reference-free).

The improvement metrics (SI-SDRi, SNRi) are the metric of the estimate minus the metric of the
unprocessed mixture against the same reference, so an identity "enhancer" scores exactly 0.

No epsilon is added: a perfect estimate gives +inf and a silent estimate NaN, both reported
with a warning rather than hidden behind a floor.
"""

import logging
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

# Length differences up to this many samples (1 ms at 16 kHz) are framing noise from
# STFT/conv front-ends and are trimmed silently; longer ones get a warning.
LENGTH_TOLERANCE = 16

# Metric name (as given to --metrics) -> the columns it produces, in table order.
METRIC_COLUMNS: Dict[str, Tuple[str, ...]] = {
    "si_sdr": ("si_sdr", "si_sdri"),
    "snr": ("snr", "snri"),
    "pesq": ("pesq",),
    "estoi": ("estoi",),
    "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
    "pdnsmos": ("pdnsmos_sig", "pdnsmos_bak", "pdnsmos_ovrl"),
    "spk_sim": ("spk_sim",),
}
DEFAULT_METRICS = ("si_sdr", "snr", "pesq", "estoi")
# Metrics that judge a signal alone (spk_sim: against an enrollment when there is no reference).
REFERENCE_FREE = ("dnsmos", "pdnsmos", "spk_sim")
# The DNS personalized track's set, beside the reference-based ones.
PERSONALIZED_METRICS = ("si_sdr", "pesq", "estoi", "dnsmos", "pdnsmos", "spk_sim")
PESQ_RATE = 16000


def _as_signal(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D signal (T,), got shape {x.shape}")
    return x


def _ratio_db(num: float, den: float) -> float:
    # 0/0 -> nan and x/0 -> inf are the honest answers here; silence numpy's warnings.
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(10.0 * np.log10(np.float64(num) / np.float64(den)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB of ``est`` (T,) against ``ref`` (T,).

    Raises:
        ValueError: ``ref`` is constant (silent after mean removal): SI-SDR is undefined.
    """
    ref = _as_signal(ref, "reference")
    est = _as_signal(est, "estimate")
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = np.dot(ref, ref)
    if ref_energy == 0.0:
        raise ValueError("reference is silent: SI-SDR is undefined")
    target = (np.dot(est, ref) / ref_energy) * ref
    distortion = est - target
    return _ratio_db(np.dot(target, target), np.dot(distortion, distortion))


def snr(ref: np.ndarray, est: np.ndarray) -> float:
    """SNR in dB of ``est`` (T,) against ``ref`` (T,): ``10 log10(|ref|^2 / |ref - est|^2)``."""
    ref = _as_signal(ref, "reference")
    est = _as_signal(est, "estimate")
    error = ref - est
    return _ratio_db(np.dot(ref, ref), np.dot(error, error))


def pesq_wb(ref: np.ndarray, est: np.ndarray, fs: int, key: str = "") -> float:
    """Wide-band PESQ (MOS-LQO, about 1.0 to 4.64); NaN with a warning when PESQ fails."""
    from pesq import PesqError, pesq

    if fs != PESQ_RATE:
        raise ValueError(f"PESQ-WB needs {PESQ_RATE} Hz audio, got {fs} Hz")
    try:
        return float(pesq(fs, _as_signal(ref, "reference"), _as_signal(est, "estimate"), "wb"))
    except PesqError as err:
        logger.warning("PESQ failed on utterance '%s' (%s): recorded as NaN", key, err)
        return float("nan")


def estoi(ref: np.ndarray, est: np.ndarray, fs: int) -> float:
    """Extended STOI (about 0 to 1) of ``est`` (T,) against ``ref`` (T,) at ``fs`` Hz."""
    from pystoi import stoi

    return float(stoi(_as_signal(ref, "reference"), _as_signal(est, "estimate"), fs, extended=True))


_ge2e = None


def speaker_embedding(x: np.ndarray, fs: int) -> np.ndarray:
    """(256,) unit GE2E embedding of a (T,) signal (the pretrained encoder, loaded once)."""
    global _ge2e
    if _ge2e is None:
        from espnet2_pse.spk.ge2e import GE2E

        _ge2e = GE2E()
    return _ge2e.embed(x, fs)


def reference_free_scores(est: np.ndarray, fs: int, metrics: Sequence[str],
                          enrollment: Optional[np.ndarray] = None) -> Dict[str, float]:
    """DNSMOS / pDNSMOS columns of a (T,) signal, and ``spk_sim``: the cosine (-1 to 1) of its
    GE2E embedding with ``enrollment``, a (256,) embedding from :func:`speaker_embedding`
    (NaN without one)."""
    from espnet2_pse.scoring.dnsmos import dnsmos

    row: Dict[str, float] = {}
    for name in metrics:
        if name in ("dnsmos", "pdnsmos"):
            row.update({f"{name}_{k}": v for k, v in dnsmos(est, fs, name).items()})
        elif name == "spk_sim":
            row["spk_sim"] = float("nan") if enrollment is None else \
                float(np.dot(enrollment, speaker_embedding(est, fs)))
    return row


def trim_to_shortest(key: str, **signals: np.ndarray) -> Dict[str, np.ndarray]:
    """Cut every (T,) signal to the shortest length; warn when lengths differ by more than
    :data:`LENGTH_TOLERANCE` samples.

    Args:
        key: utterance id, named in the warning.
        **signals: name -> (T_name,) array.
    Returns:
        name -> (min T,) array.
    """
    lengths = {name: len(x) for name, x in signals.items()}
    shortest = min(lengths.values())
    if max(lengths.values()) - shortest > LENGTH_TOLERANCE:
        logger.warning(
            "utterance '%s': lengths differ (%s samples); trimming all to %d",
            key,
            ", ".join(f"{name}={n}" for name, n in lengths.items()),
            shortest,
        )
    return {name: x[:shortest] for name, x in signals.items()}


def check_metrics(metrics: Sequence[str]) -> Tuple[str, ...]:
    """Validate metric names; return them as a tuple in the given order."""
    unknown = [m for m in metrics if m not in METRIC_COLUMNS]
    if unknown or not metrics:
        raise ValueError(
            f"unknown metric(s) {unknown or metrics!r}; choose from {', '.join(METRIC_COLUMNS)}"
        )
    return tuple(dict.fromkeys(metrics))


def columns_for(metrics: Sequence[str]) -> Tuple[str, ...]:
    """Table columns produced by ``metrics``, e.g. ("si_sdr", "si_sdri", "pesq")."""
    return tuple(col for m in check_metrics(metrics) for col in METRIC_COLUMNS[m])


def score_utterance(
    ref: np.ndarray,
    mix: np.ndarray,
    est: Optional[np.ndarray],
    fs: int,
    metrics: Sequence[str] = DEFAULT_METRICS,
    key: str = "",
) -> Dict[str, float]:
    """All requested metrics of one utterance.

    Args:
        ref: (T,) clean reference.
        mix: (T,) unprocessed mixture, the baseline of the improvement metrics.
        est: (T,) enhanced signal; None scores the mixture itself (the "unprocessed" row).
        fs: sample rate in Hz.
        metrics: names from :data:`METRIC_COLUMNS`.
        key: utterance id, named in warnings.
    Returns:
        column name -> value (dB for SI-SDR/SNR and their improvements).
    """
    signals = {"ref": ref, "mix": mix} if est is None else {"ref": ref, "mix": mix, "est": est}
    signals = trim_to_shortest(key, **signals)
    ref, mix = signals["ref"], signals["mix"]
    est = signals.get("est", mix)

    row: Dict[str, float] = {}
    for name in check_metrics(metrics):
        if name in ("si_sdr", "snr"):
            fn = si_sdr if name == "si_sdr" else snr
            value = fn(ref, est)
            # The same call on the same arrays: an identity enhancer gets exactly 0.
            row[name], row[name + "i"] = value, value - fn(ref, mix)
            if not np.isfinite(value):
                logger.warning("utterance '%s': %s is %s (silent or perfect estimate)", key, name, value)
        elif name == "pesq":
            row["pesq"] = pesq_wb(ref, est, fs, key=key)
        elif name == "estoi":
            row["estoi"] = estoi(ref, est, fs)
        elif name in REFERENCE_FREE:
            enrollment = speaker_embedding(ref, fs) if name == "spk_sim" else None
            row.update(reference_free_scores(est, fs, (name,), enrollment=enrollment))
    return row
