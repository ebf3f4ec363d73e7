"""A local Ray cluster that listens on 127.0.0.1 only: for the demo, tests and laptops.

`ray start` and `ray.init` read these variables at import time, so `local_env()` must be applied
before `import ray` in any process that talks to the cluster (the launcher does it first thing).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from faice.train.reporting import without_wandb_service

# Same values for `ray start`, `ray job submit` and `ray.init`. Token authentication always: loopback
# keeps other machines out, not the other users of this one, who could otherwise post a job to the
# dashboard's job API and run code as the researcher. A local cluster gets a fresh random token
# (`ensure_local_token`); lab clusters use the lab's token (cluster/README.md).
LOCAL_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps --node-ip-address=127.0.0.1 from being rewritten
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
}


def local_env(base: dict | None = None) -> dict:
    """`base` (default os.environ) with the local-cluster settings; explicit choices are kept, except the
    auth mode: token, whatever the environment says (faice never runs or joins a cluster without it)."""
    env = without_wandb_service(dict(os.environ if base is None else base))  # workers own their W&B service
    for key, value in LOCAL_ENV.items():
        env.setdefault(key, value)
    env["RAY_AUTH_MODE"] = "token"
    return env


def apply_local_env() -> None:
    """Set this process's environment for Ray (token auth, loopback-only listeners). Ray reads the auth
    mode when it is imported: call this before `import ray`."""
    os.environ.update({k: v for k, v in local_env().items() if k in LOCAL_ENV})


_local_token: Path | None = None


def ensure_local_token() -> Path:
    """This process's token for the local clusters it starts: 256 random bits in a file only this user can
    read (a fresh mode-700 folder in the temp dir, removed when the process exits), named to Ray by
    RAY_AUTH_TOKEN_PATH; the same token for every local cluster of this process (Ray's clients load it
    once). The token never goes on a command line or into the environment itself."""
    global _local_token
    if _local_token is None or not _local_token.is_file():
        import atexit
        import secrets
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="faice-auth-"))  # mode 700
        path = folder / "auth_token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        atexit.register(shutil.rmtree, folder, True)
        _local_token = path
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(_local_token)
    os.environ.pop("RAY_AUTH_TOKEN", None)  # a lab's token in the environment is not for this cluster
    return _local_token


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="ignore")
        except OSError:
            continue
        table[int(proc.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmdline)
    return table


@dataclass
class LocalCluster:
    """A head node started with `ray start --head` on 127.0.0.1, stopped by the pids it owns."""

    temp_dir: Path
    address: str = ""
    dashboard_url: str = ""
    env: dict = field(default_factory=dict)

    def pids(self) -> list[int]:
        """Processes of this cluster: those whose command line names its temp dir, and their descendants."""
        table = _process_table()
        roots = {pid for pid, (_, cmd) in table.items() if str(self.temp_dir) in cmd and pid != os.getpid()}
        found, frontier = set(roots), set(roots)
        while frontier:
            frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
            found |= frontier
        return sorted(found)

    def stop(self, timeout: float = 20) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.time() + timeout
            while self.pids() and time.time() < deadline:
                time.sleep(0.2)


def wait_for_job_agent(cluster: LocalCluster, timeout: float = 120) -> None:
    """Block until the head accepts `ray job submit` (its job agent registers a few seconds after start)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    deadline = time.time() + timeout
    while True:
        try:
            client = JobSubmissionClient(cluster.dashboard_url)
            job = client.submit_job(entrypoint="true")
            while client.get_job_status(job) not in (
                JobStatus.SUCCEEDED,
                JobStatus.FAILED,
                JobStatus.STOPPED,
            ):
                time.sleep(0.5)
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)


def _node_ports() -> list[str]:
    """Every listener of a node on its own free port, so clusters never collide on Ray's defaults."""
    flags = [
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
        "--node-manager-port",
        "--object-manager-port",
    ]
    return [f"{flag}={free_port()}" for flag in flags]


def fake_autoscaling_config(
    node_types: dict[str, dict], head_cpus: float, gcs_address: str, idle_timeout_s: float = 6.0
) -> dict:
    """A Ray autoscaler config for Ray's fake multi-node provider: the autoscaler of a head started with
    it launches and removes worker nodes of `node_types` (faice.kuberay.autoscaler_node_types) as local
    processes on 127.0.0.1, as it would pods or VMs; idle nodes go after `idle_timeout_s`."""
    types = {"ray.head.default": {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
             **node_types}  # fmt: skip
    empty = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
             "head_start_ray_commands", "worker_start_ray_commands", "cluster_synced_files", "rsync_exclude",
             "rsync_filter")  # fmt: skip
    return {
        "cluster_name": "faice-fake",
        "max_workers": sum(t.get("max_workers", 0) for t in node_types.values()),
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },  # fmt: skip
        "available_node_types": types,
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "upscaling_speed": 100.0,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "file_mounts": {},
        "file_mounts_sync_continuously": False,
        **{k: [] for k in empty},
    }


def start_local_cluster(
    temp_dir: str | Path,
    num_cpus: int | None = None,
    resources: dict | None = None,
    timeout: float = 120,
    autoscale: dict[str, dict] | None = None,
    idle_timeout_s: float = 6.0,
) -> LocalCluster:
    """`ray start --head` on 127.0.0.1 with a dashboard (for `ray job submit`) and free ports. With
    `autoscale` (node types, see fake_autoscaling_config) Ray's autoscaler runs on the head with the fake
    multi-node provider: worker nodes come up when work waits for their resources and go when idle."""
    temp_dir = Path(temp_dir).resolve()
    temp_dir.mkdir(parents=True, exist_ok=True)
    gcs_port, dash_port = free_port(), free_port()
    ensure_local_token()
    env = local_env()
    extra = []
    if autoscale is not None:
        config = fake_autoscaling_config(autoscale, num_cpus or 1, f"127.0.0.1:{gcs_port}", idle_timeout_s)
        (temp_dir / "autoscaling.json").write_text(json.dumps(config))
        extra.append(f"--autoscaling-config={temp_dir / 'autoscaling.json'}")
        env.update(RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
    cmd = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--include-dashboard=true",
        f"--ray-client-server-port={free_port()}",
        *_node_ports(),
        *extra,
    ]
    if num_cpus is not None:
        cmd.append(f"--num-cpus={num_cpus}")
    if resources:
        cmd.append(f"--resources={json.dumps(resources)}")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    cluster = LocalCluster(temp_dir, f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", env)
    if out.returncode != 0:
        cluster.stop()
        raise RuntimeError(f"ray start failed:\n{out.stdout}\n{out.stderr}")
    return cluster
