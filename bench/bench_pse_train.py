"""Throughput of pse_train with on-the-fly PseudoSE mixing against a bare PyTorch loop.

    tools/venv/bin/python bench/bench_pse_train.py [--preset cpu] [--iters 30] [--crop 0.5]

Both train the same model (built by PSETask from one config) with Adam, the same batch and the
same crop, in this process and run:
- pse_train: PSETask.main with ssl_objective pseudo_se (premixture + injection noise drawn
  per batch, batch scaling, ESPnet's criterion, iterator, reporter and checkpointing);
  its speed is taken from the trainer's own epoch time;
- bare: a loop over tensors mixed beforehand from the same corpus files (encoder ->
  separator -> decoder -> negative SNR -> backward -> step), i.e. the cost of the network
  alone on the same kind of audio (the content matters on CPU: near-silent stretches are
  slower to compute than white noise).
Each is run ``--repeats`` times, alternating, and its best run counts. It prints examples/s
of each and their ratio (target >= 0.95), then the bare examples/s of
every separator preset at the same crop, so the machine's speed is visible next to it.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import yaml

from espnet2_pse.data.mixing import mix_at_snr
from espnet2_pse.losses.distances import distance
from espnet2_pse.tasks.pse import PSETask

FS = 16000
ENCODERS = {"cpu": (64, 32, 16)}  # preset -> (channels, kernel, stride); paper presets: 512/16/8


def model_config(preset: str) -> dict:
    channel, kernel, stride = ENCODERS.get(preset, (512, 16, 8))
    conv = {"channel": channel, "kernel_size": kernel, "stride": stride}
    return {
        "encoder": "conv", "encoder_conf": conv, "decoder": "conv", "decoder_conf": conv,
        "separator": "conv_tasnet_skip", "separator_conf": {"preset": preset},
        "criterions": [{"name": "pse_distance", "conf": {"distance": "snr"},
                        "wrapper": "fixed_order", "wrapper_conf": {"weight": 1.0}}],
    }


def write_corpus(root: Path, seconds: float) -> dict:
    """Speech-like and noise wavs long enough for every crop; returns scp paths."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * FS)) / FS
    scps = {}
    for name, count in (("speech", 16), ("noise", 8)):
        lines = []
        for i in range(count):
            if name == "speech":
                x = np.sin(2 * np.pi * (100 + 10 * i) * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
            else:
                x = rng.standard_normal(t.size)
            path = root / f"{name}{i}.wav"
            soundfile.write(path, (0.3 * x / np.abs(x).max()).astype(np.float32), FS)
            lines.append(f"{name}{i} {path}\n")
        scps[name] = root / f"{name}.scp"
        scps[name].write_text("".join(lines))
    return scps


def pse_train_speed(preset, batch, crop, iters, scps, workdir: Path) -> float:
    config = dict(model_config(preset))
    config.update(
        ssl_objective="pseudo_se",
        ssl_objective_conf={"inject_noise_scp": str(scps["noise"]), "premix_noise_scp": str(scps["noise"])},
        iterator_type="chunk", chunk_length=int(crop * FS), batch_type="unsorted", batch_size=batch,
        num_iters_per_epoch=iters, max_epoch=1, optim="adam", optim_conf={"lr": 1e-3},
        num_workers=0, use_tensorboard=False, use_matplotlib=False,
    )
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([
        sys.executable, "-m", "espnet2_pse.bin.pse_train",
        "--config", str(workdir / "config.yaml"), "--output_dir", str(workdir / "exp"),
        "--train_data_path_and_name_and_type", f"{scps['speech']},speech_ref1,sound",
        "--train_shape_file", str(scps["speech"]),
        "--valid_data_path_and_name_and_type", f"{scps['speech']},speech_mix,sound",
        "--valid_data_path_and_name_and_type", f"{scps['speech']},speech_ref1,sound",
        "--valid_shape_file", str(scps["speech"]),
    ], capture_output=True, text=True, check=True)
    # The trainer's own epoch time (training part only): start-up and validation excluded.
    found = re.search(r"\[train\].*?train_time=[^,]+, time=([0-9.]+) seconds, total_count=(\d+)", proc.stderr)
    seconds, steps = float(found.group(1)), int(found.group(2))
    return steps * batch / seconds


def premixed_batches(scps, batch, crop, iters) -> tuple:
    """(iters, batch, T) mixtures and targets made beforehand from the same corpus files."""
    def load(scp):
        return [soundfile.read(line.split()[1], dtype="float32")[0] for line in scp.read_text().splitlines()]

    speech, noise = load(scps["speech"]), load(scps["noise"])
    rng = np.random.default_rng(0)
    length = int(crop * FS)

    def crops(pool):
        out = np.empty((iters, batch, length), dtype=np.float32)
        for i in np.ndindex(iters, batch):
            clip = pool[rng.integers(len(pool))]
            start = rng.integers(clip.size - length + 1)
            out[i] = clip[start:start + length]
        return torch.from_numpy(out)

    target = crops(speech)
    mixture = mix_at_snr(target, crops(noise), torch.from_numpy(rng.uniform(-5, 5, (iters, batch))).float())
    return mixture, target


def bare_speed(preset, batch, crop, iters, scps) -> float:
    args = argparse.Namespace(**PSETask.get_parser().parse_args([]).__dict__)
    for key, value in model_config(preset).items():
        setattr(args, key, value)
    model = PSETask.build_model(args)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mixture, target = premixed_batches(scps, batch, crop, iters)
    length = target.shape[-1]
    lengths = torch.full((batch,), length)
    model.train()
    start = None
    for i in range(iters):
        if i == 1:  # the first step pays one-off allocation costs, as ESPnet's does
            start = time.perf_counter()
        feats, flens = model.encoder(mixture[i], lengths)
        masked, flens, _ = model.separator(feats, flens)
        estimate, _ = model.decoder(masked[0], lengths)
        loss = distance("snr", estimate, target[i]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (iters - 1) * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu", help="separator preset of the comparison")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=float, default=0.5, help="seconds")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--presets", default="cpu,tiny,small,medium,large", help="presets to time (bare)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each; the best counts")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on both sides (the recipe trains with one per job)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the pse_train subprocess
    with tempfile.TemporaryDirectory() as tmp:
        scps = write_corpus(Path(tmp) / "corpus", seconds=max(2.0, 4 * args.crop))
        # Alternate the two and keep each one's best run: the machine's noise (other processes,
        # frequency changes) then penalises neither side.
        bare, ours = 0.0, 0.0
        for repeat in range(args.repeats):
            bare = max(bare, bare_speed(args.preset, args.batch, args.crop, args.iters, scps))
            ours = max(ours, pse_train_speed(args.preset, args.batch, args.crop, args.iters, scps,
                                             Path(tmp) / f"run{repeat}"))
    print(f"\npreset {args.preset}, batch {args.batch}, {args.crop} s crops, {args.iters} steps, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"  pse_train (on-the-fly pseudo_se): {ours:8.1f} examples/s")
    print(f"  bare PyTorch loop (pre-mixed):    {bare:8.1f} examples/s")
    print(f"  ratio pse_train / bare:           {ours / bare:8.3f}   (target >= 0.95)")
    print("\nbare training speed per preset (same batch and crop):")
    with tempfile.TemporaryDirectory() as tmp:
        scps = write_corpus(Path(tmp) / "corpus", seconds=max(2.0, 4 * args.crop))
        for preset in args.presets.split(","):
            steps = max(3, args.iters // 5) if preset in ("medium", "large") else args.iters
            print(f"  {preset:7s} {bare_speed(preset, args.batch, args.crop, steps, scps):8.1f} examples/s")


if __name__ == "__main__":
    main()
