"""cluster/slurm/faice-ray.sbatch: node roles and the search command, checked in its dry-run mode with
a stub `scontrol` standing in for Slurm."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "slurm" / "faice-ray.sbatch"


def dry_run(tmp_path, hosts: list[str], *args: str, **env: str) -> subprocess.CompletedProcess:
    stub = tmp_path / "scontrol"
    stub.write_text("#!/bin/sh\n" + "".join(f"echo {h}\n" for h in hosts))
    stub.chmod(0o755)
    full_env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu[01-03]",
                "FAICE_DRY_RUN": "1", "FAICE_HEAD_IP": "10.9.0.1", **env}  # fmt: skip
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=60
    )


def test_syntax():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True, timeout=60)


def test_head_training_and_evaluation_nodes(tmp_path):
    out = dry_run(tmp_path, ["gpu01", "gpu02", "gpu03"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    starts = {ln.split(" -w ")[1].split()[0]: ln for ln in lines if "start-node.sh" in ln}
    assert set(starts) == {"gpu01", "gpu02", "gpu03"}
    assert "--head --node-ip 10.9.0.1 --port 6379" in starts["gpu01"]
    assert "--address 10.9.0.1:6379 --pool train" in starts["gpu02"]
    assert "--address 10.9.0.1:6379 --pool eval" in starts["gpu03"]
    search = [ln for ln in lines if "tune.search" in ln]
    assert search == [
        f"+ env RAY_ADDRESS=10.9.0.1:6379 python -m tune.search --space demo-asha.yaml --profile gpu-24gb --storage {REPO}/runs/searches"
    ]
    assert any("ray stop --force" in ln for ln in lines)  # Ray is stopped when the job ends


def test_custom_search_more_evaluators_and_too_few_nodes(tmp_path):
    hosts = ["n1", "n2", "n3", "n4", "n5"]
    out = dry_run(
        tmp_path, hosts, "python", "-m", "tune.search", "--space", "beta-schedule.yaml", FAICE_EVAL_NODES="2"
    )
    pools = {
        ln.split(" -w ")[1].split()[0]: ln.split("--pool ")[1].split()[0]
        for ln in out.stdout.splitlines()
        if "--pool" in ln
    }
    assert pools == {"n2": "train", "n3": "train", "n4": "eval", "n5": "eval"}
    assert "--space beta-schedule.yaml" in out.stdout
    two = dry_run(tmp_path, ["n1", "n2"])
    assert two.returncode == 0 and "--pool train" in two.stdout and "no evaluation node" in two.stderr
    one = dry_run(tmp_path, ["n1"])
    assert one.returncode == 2 and "cannot hold a head" in one.stderr
