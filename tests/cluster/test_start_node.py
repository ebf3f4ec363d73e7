"""cluster/start-node.sh: the resources each host advertises, from its pool and its GPUs (a stubbed
nvidia-smi stands in for 0, 1 and 4 GPUs)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cluster" / "start-node.sh"


def start_node(tmp_path, *args, gpus: int | None = None, pools: str = "") -> subprocess.CompletedProcess:
    """Run the script with --dry-run; `gpus` None = no nvidia-smi on PATH at all."""
    bin_dir = tmp_path / f"bin-{gpus}"
    bin_dir.mkdir(exist_ok=True)
    if gpus is not None:
        lines = "".join(f"GPU {i}: NVIDIA A100 80GB (UUID: GPU-{i})\\n" for i in range(gpus))
        stub = bin_dir / "nvidia-smi"
        stub.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] && printf "{lines}"\nexit 0\n')
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "FAICE_POOLS": pools}
    env.pop("RAY_AUTH_MODE", None)
    cmd = ["bash", str(SCRIPT), "--dry-run", *args]  # before any `--` (those args go to ray)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def node(out: subprocess.CompletedProcess) -> tuple[dict, str]:
    assert out.returncode == 0, out.stderr
    info, command = out.stdout.strip().splitlines()
    return json.loads(info.removeprefix("faice-node: ")), command


@pytest.mark.parametrize("gpus,slots", [(None, 1), (0, 1), (1, 1), (4, 4)])
@pytest.mark.parametrize("pool", ["train", "eval"])
def test_a_worker_advertises_one_slot_per_gpu_of_its_pool(tmp_path, gpus, slots, pool):
    pools = f"10.1.0.5={pool} 10.1.0.6=eval"
    info, command = node(
        start_node(tmp_path, "--address", "10.1.0.1:6379", "--node-ip", "10.1.0.5", gpus=gpus, pools=pools)
    )
    assert info == {
        "pool": pool,
        "gpus": gpus or 0,
        "node_ip": "10.1.0.5",
        "resources": {f"{pool}_slot": slots},
    }
    assert command.startswith("RAY_AUTH_MODE=token ray start --address=10.1.0.1:6379")
    assert f"--num-gpus={gpus or 0}" in command and "--node-ip-address=10.1.0.5" in command
    other = "eval" if pool == "train" else "train"
    assert f"{other}_slot" not in command


def test_the_head_advertises_no_slot_unless_asked(tmp_path):
    info, command = node(start_node(tmp_path, "--head", "--node-ip", "10.1.0.1", gpus=4))
    assert info["pool"] == "head" and info["resources"] == {}
    assert "--dashboard-host=10.1.0.1" in command and "0.0.0.0" not in command
    info, _ = node(start_node(tmp_path, "--head", "--node-ip", "10.1.0.1", "--pool", "train", gpus=4))
    assert info["resources"] == {"train_slot": 4}
    _, command = node(
        start_node(tmp_path, "--head", "--node-ip", "10.1.0.1", "--", "--autoscaling-config=x.yaml")
    )
    assert command.endswith("--autoscaling-config=x.yaml")


def test_a_host_without_a_pool_is_refused_with_the_fix(tmp_path):
    out = start_node(tmp_path, "--address", "10.1.0.1:6379", "--node-ip", "10.1.0.9", pools="10.1.0.5=train")
    assert out.returncode == 2 and "has no pool in FAICE_POOLS" in out.stderr and "=train" in out.stderr
    out = start_node(tmp_path, "--address", "10.1.0.1:6379", "--node-ip", "10.1.0.5", pools="10.1.0.5=gpu")
    assert out.returncode == 2 and "unknown pool 'gpu'; valid pools: train, eval" in out.stderr
    out = start_node(tmp_path, "--node-ip", "10.1.0.5")
    assert out.returncode == 2 and "--address" in out.stderr


def test_the_host_is_found_by_hostname(tmp_path):
    host = subprocess.run(["hostname"], capture_output=True, text=True, timeout=10).stdout.strip()
    info, _ = node(start_node(tmp_path, "--address", "10.1.0.1:6379", gpus=1, pools=f"{host}=eval"))
    assert info["pool"] == "eval" and info["resources"] == {"eval_slot": 1}


@pytest.mark.parametrize(
    "env,message",
    [
        ({"RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE='disabled' is refused"),
        ({"RAY_AUTH_MODE": ""}, "RAY_AUTH_MODE='' is refused"),
        ({"FAICE_DASHBOARD_HOST": "0.0.0.0"}, "a dashboard on 0.0.0.0 (every interface) is refused"),
        ({"FAICE_DASHBOARD_HOST": "::"}, "a dashboard on :: (every interface) is refused"),
    ],
)
def test_the_head_refuses_other_auth_modes_and_an_open_dashboard(tmp_path, env, message):
    script_env = {**os.environ, "PATH": "/usr/bin:/bin", "FAICE_POOLS": ""}
    script_env.pop("RAY_AUTH_MODE", None)
    script_env.update(env)
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--head", "--node-ip", "10.1.0.1"], env=script_env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and message in out.stderr, out.stderr
    quoted = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--head", "--node-ip", "10.1.0.1", "--",
                             '--dashboard-host="0.0.0.0"'], env={**script_env, **{"RAY_AUTH_MODE": "token"},
                            "FAICE_DASHBOARD_HOST": "10.1.0.1"}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert quoted.returncode == 2 and "every interface" in quoted.stderr
    allowed = {**script_env, "RAY_AUTH_MODE": "token", "FAICE_ALLOW_PUBLIC_DASHBOARD": "1"}
    if "FAICE_DASHBOARD_HOST" in env:  # asked for explicitly: allowed
        ok = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--head", "--node-ip", "10.1.0.1"], env=allowed,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
        assert ok.returncode == 0 and f"--dashboard-host={env['FAICE_DASHBOARD_HOST']}" in ok.stdout
