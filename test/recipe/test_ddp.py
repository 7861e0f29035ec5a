"""A real 2-process distributed training on CPU (gloo) through pse_train."""

import re
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from test.ssl.test_ssl_training import BASE


def test_two_rank_gloo_training_writes_one_checkpoint(tmp_path, tiny_corpus):
    config = dict(BASE, ssl_objective="pseudo_se",
                  ssl_objective_conf={"inject_noise_scp": str(tiny_corpus["noise_scp"])})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    data, exp, logs = tiny_corpus["dir"], tmp_path / "exp", tmp_path / "rank_logs"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--log_dir", str(logs), "--redirects", "3",
         "-m", "espnet2_pse.bin.pse_train", "--config", str(tmp_path / "config.yaml"),
         "--ngpu", "0", "--dist_backend", "gloo", "--multiprocessing_distributed", "false",
         "--train_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
         "--train_shape_file", f"{data}/spk1.scp",
         "--valid_data_path_and_name_and_type", f"{data}/wav.scp,speech_mix,sound",
         "--valid_data_path_and_name_and_type", f"{data}/spk1.scp,speech_ref1,sound",
         "--valid_shape_file", f"{data}/wav.scp",
         "--output_dir", str(exp)],
        capture_output=True, text=True, timeout=600,
    )
    rank_logs = {p.parent.name: p.read_text() for p in logs.rglob("stderr.log")}
    assert proc.returncode == 0, proc.stderr[-3000:] + "".join(rank_logs.values())[-3000:]
    # Both ranks ran the training command and exited 0 (torchrun fails if either does not;
    # DDP's gradient all-reduce would hang if one rank skipped training). ESPnet tags rank 0's
    # log lines "[host:rank/world_size]" and keeps the other ranks' logs at ERROR level.
    assert sorted(rank_logs) == ["0", "1"], sorted(rank_logs)
    assert all("espnet2_pse/bin/pse_train.py" in log for log in rank_logs.values())
    assert re.search(r"\[[^\]]*:0/2\] .*1epoch results", rank_logs["0"]), rank_logs["0"][-2000:]
    checkpoints = sorted(p.name for p in exp.glob("*epoch.pth"))
    assert checkpoints == ["1epoch.pth"]
    state = torch.load(exp / "1epoch.pth")
    assert all(torch.isfinite(v).all() for v in state.values())
    assert Path(exp / "checkpoint.pth").is_file()
