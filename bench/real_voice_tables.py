"""Tables that bench_real_voice.py prints: systems x metrics per voice, quality against
training time, and a loaded run against the idle one."""

import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np

from espnet2_pse.scoring.metrics import PERSONALIZED_METRICS, columns_for

COLUMNS = columns_for(PERSONALIZED_METRICS)
SHOWN = (("si_sdri", "SI-SDRi", "8.2f"), ("pesq", "PESQ-WB", "8.2f"), ("estoi", "eSTOI", "6.3f"),
         ("dnsmos_ovrl", "DNSMOS", "6.2f"), ("pdnsmos_ovrl", "pDNSMOS", "7.2f"), ("spk_sim", "SpkSim", "6.3f"))
DELTAS = (("si_sdri", "dSI-SDRi", "+9.2f"), ("pesq", "dPESQ", "+6.2f"), ("estoi", "deSTOI", "+7.3f"),
          ("pdnsmos_ovrl", "dpDNSMOS", "+8.2f"))


def _cell(value: float, fmt: str) -> str:
    """A table cell, blank for a metric the system is not scored on."""
    width = int(fmt.lstrip("+").split(".")[0])
    return " " * width if np.isnan(value) else f"{value:{fmt}}"


def print_table(results: Dict[str, dict], condition: str, order: Sequence[str]) -> None:
    """Every system of ``order`` that was scored, per voice and on the mean over the voices."""
    voices = list(results)
    systems = [s for s in order if s in results[voices[0]]["scores"][condition]]
    mean = {s: {c: float(np.mean([results[v]["scores"][condition][s][c] for v in voices])) for c in COLUMNS}
            for s in systems}
    header = f"{'voice':<22} {'system':<15} " + " ".join(
        f"{name:>{int(fmt.lstrip('+').split('.')[0])}}" for _, name, fmt in SHOWN + DELTAS)
    header += f" {'personalize s':>13}"
    print(header)
    print("-" * len(header))
    for voice in voices + ["mean"]:
        scores = mean if voice == "mean" else results[voice]["scores"][condition]
        peer = scores["deepfilternet3"]
        for system in systems:
            r = scores[system]
            times = [results[v]["times"][system] for v in ([voice] if voice != "mean" else voices)
                     if system in results[v]["times"]]
            wall = f"{np.mean(times):.0f}" if times else ""
            cells = " ".join(_cell(r[col], fmt) for col, _, fmt in SHOWN)
            deltas = " ".join(_cell(r[col] - peer[col], fmt) for col, _, fmt in DELTAS)
            print(f"{voice:<22} {system:<15} {cells} {deltas} {wall:>13}")
        print()
    refined = [s for s in systems if s in results[voices[0]].get("accept", {}).get(condition, {})]
    if refined:
        print("refinement, accepted embedding updates: " + "; ".join(
            f"{voice} " + ", ".join(f"{s.split()[1]} {results[voice]['accept'][condition][s]:.0%}" for s in refined)
            for voice in voices))
    print("DNSMOS / pDNSMOS: OVRL of DNSMOS P.835 and of the personalized model; SpkSim: GE2E cosine to the clean "
          "reference; d*: difference to DeepFilterNet3 on the same files; 'few-shot' wall time is the second "
          "personalize run, which reuses the zero-shot model; clean-only / clean-only-5s: personalize on the "
          "clean speech alone (no noisy recordings) and on its first 5 s; static/refined <enrollment>: the "
          "conditioned model with the user's first 5 s of clean speech (clean5), 1.5 s of it (short) or 5 s of "
          "noisy recordings (noisy); "
          "static oracle: each file with the embedding of its own clean reference (the ceiling of any refinement); "
          "reference: the clean reference itself, on the metrics that do not compare with it.")


def print_curve(results: Dict[str, dict], condition: str) -> None:
    """Quality against training time, per voice (the peers' row for reference)."""
    print(f"\nquality against training time ({condition}): SI-SDRi / PESQ-WB / eSTOI after each kept epoch")
    for voice, result in results.items():
        peer = result["scores"][condition]["deepfilternet3"]
        print(f"  {voice}: DeepFilterNet3 {peer['si_sdri']:.2f} / {peer['pesq']:.2f} / {peer['estoi']:.3f}")
        for row in result.get("curve", {}).get(condition, []):
            print(f"    {row['system']:<9} epoch {row['epoch']:>4}  {row['train_s'] / 60:5.1f} min  "
                  f"{row['si_sdri']:6.2f} / {row['pesq']:.2f} / {row['estoi']:.3f}")


def print_load_comparison(results: Dict[str, dict], idle_path: Path, condition: str, load: int) -> None:
    """Zero-shot SI-SDRi and personalize wall time, loaded against the idle run's results file."""
    if not idle_path.is_file():
        print(f"(no idle run to compare with: {idle_path} is missing; run the same command without --load)")
        return
    idle = json.loads(idle_path.read_text())
    print(f"\nzero-shot with {load} competing busy process(es) vs idle ({condition}):")
    for voice, result in results.items():
        if voice not in idle or "zero-shot" not in idle[voice]["times"]:
            print(f"  {voice}: no idle zero-shot run in {idle_path}")
            continue
        loaded_db = result["scores"][condition]["zero-shot"]["si_sdri"]
        idle_db = idle[voice]["scores"][condition]["zero-shot"]["si_sdri"]
        print(f"  {voice}: SI-SDRi {loaded_db:.2f} dB loaded, {idle_db:.2f} dB idle ({loaded_db - idle_db:+.2f}); "
              f"wall {result['times']['zero-shot']:.0f} s loaded, {idle[voice]['times']['zero-shot']:.0f} s idle")
