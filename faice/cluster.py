"""`faice cluster check`: a cluster YAML against Ray's own schema and faice's pool conventions.

Two kinds of file: Ray cluster-launcher configs (`ray up`, e.g. cluster/lab.yaml) and KubeRay
`RayCluster` resources (cluster/kuberay.yaml, see faice.kuberay). Ray is not imported: its schema is a
JSON file inside the installed package, read as data.

Conventions of a Ray cluster-launcher config (the on-premise `local` provider):
- every worker is started by cluster/start-node.sh and finds its pool (train | eval) in FAICE_POOLS;
  every worker IP has exactly one pool, and every FAICE_POOLS host is a worker;
- the head is started by start-node.sh --head and advertises no train_slot unless asked (--pool train);
- token authentication stays on, the dashboard is not bound to all interfaces, no secret is written in.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from faice.config import read_yaml
from faice.errors import ConfigError
from faice.kuberay import check_kuberay
from faice.schemas import schema_errors

POOLS = ("train", "eval")
_SECRET_VALUE = re.compile(r"\b(WANDB_API_KEY|RAY_AUTH_TOKEN)=(?!\$)\S+")


@dataclass
class Report:
    """What `check_cluster` found: errors fail the check, notes are printed."""

    kind: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def ray_schema() -> dict:
    """Ray's cluster-config JSON schema, from the installed ray package (without importing ray)."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("ray is not installed, so its cluster schema is missing (make venv)")
    path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    return json.loads(path.read_text())


def _commands(doc: dict, key: str) -> list[str]:
    value = doc.get(key) or []
    return [str(c) for c in value] if isinstance(value, list) else [str(value)]


def parse_pools(text: str) -> dict[str, str]:
    """FAICE_POOLS="host=pool ..." assignments in a command, host -> pool."""
    pools: dict[str, str] = {}
    for m in re.finditer(r"FAICE_POOLS=(\"[^\"]*\"|'[^']*'|\S+)", text):
        try:
            words = shlex.split(m.group(1))
        except ValueError as e:  # an unbalanced quote
            raise ConfigError(
                f'FAICE_POOLS: cannot read {m.group(1)!r} ({e}); write FAICE_POOLS="host=pool host=pool"'
            ) from None
        for entry in (words[0] if words else "").split():
            host, _, pool = entry.partition("=")
            pools[host] = pool
    return pools


# Every spelling of "the dashboard (and the job API) listens on every interface": --dashboard-host=0.0.0.0,
# --dashboard-host "0.0.0.0", FAICE_DASHBOARD_HOST='::', dashboard_host: 0.0.0.0 ...
_OPEN_DASHBOARD = re.compile(
    r"""(--dashboard-host|FAICE_DASHBOARD_HOST|dashboard[_-]host)["']?\s*(?:=|:|\s)\s*\\?["']?"""
    r"""(0\.0\.0\.0|::|\[::\]|\*)(?![\w.])""",
    re.IGNORECASE,
)
# every spelling of the auth mode: RAY_AUTH_MODE=X, RAY_AUTH_MODE="X", export RAY_AUTH_MODE='', RAY_AUTH_MODE: X ...
_AUTH_MODE = re.compile(r"""RAY_AUTH_MODE["']?\s*(?:=|:)\s*\\?["']?([^\s"'\\;&|)]*)""")


def insecure_settings(text: str) -> list[str]:
    """Errors for a dashboard open on every interface, or an auth mode other than token, in any spelling
    of a shell command or YAML (an explicit 0.0.0.0 is allowed only through start-node.sh's
    FAICE_ALLOW_PUBLIC_DASHBOARD=1, which this reports as an error too: a lab file should not need it)."""
    errors = []
    for m in _OPEN_DASHBOARD.finditer(text):
        errors.append(
            f"{m.group(1)} {m.group(2)}: the dashboard and job API would listen on every interface; "
            "bind them to the head's private address (FAICE_DASHBOARD_HOST=10.x.x.x)"
        )
    for m in _AUTH_MODE.finditer(text):
        if m.group(1) != "token":
            errors.append(f"RAY_AUTH_MODE={m.group(1) or '(empty)'}: token authentication must stay on")
    return errors


def check_launcher_config(doc: dict) -> Report:
    """A `ray up` config: Ray's schema (as Ray prepares a local-provider config) + faice conventions."""
    report = Report("ray cluster launcher config")
    provider = doc.get("provider") if isinstance(doc.get("provider"), dict) else {}
    prepared = dict(doc)
    if provider.get("type") == "local":
        prepared.pop("min_workers", None)  # Ray's local provider moves it into its single node type
    try:
        report.errors += schema_errors(prepared, ray_schema())
    except FileNotFoundError as e:
        report.errors.append(str(e))
    if provider.get("type") != "local":
        report.notes.append(f"provider {provider.get('type')!r}: only the schema is checked")
        return report

    workers = provider.get("worker_ips")
    if not provider.get("head_ip"):
        report.errors.append("provider.head_ip: missing; the head machine's address")
    if not isinstance(workers, list) or not workers:
        report.errors.append("provider.worker_ips: missing or empty; list every worker machine")
        workers = []
    head_text = "\n".join(_commands(doc, "head_start_ray_commands"))
    worker_text = "\n".join(_commands(doc, "worker_start_ray_commands"))

    if "start-node.sh" not in worker_text:
        report.errors.append(
            "worker_start_ray_commands: workers must start with cluster/start-node.sh, which advertises "
            "their pool (train_slot / eval_slot); plain `ray start` leaves them in no pool"
        )
    try:
        pools = parse_pools(worker_text)
    except ConfigError as e:
        report.errors.append(f"worker_start_ray_commands: {e}")
        pools = {}
    for ip in workers:
        if str(ip) not in pools:
            report.errors.append(
                f"worker_start_ray_commands: worker {ip} has no pool in FAICE_POOLS; valid pools: {', '.join(POOLS)}"
            )
    for host, pool in pools.items():
        if pool not in POOLS:
            report.errors.append(
                f"worker_start_ray_commands: FAICE_POOLS gives {host} the pool {pool!r}; valid pools: {', '.join(POOLS)}"
            )
        if host not in [str(w) for w in workers]:
            report.errors.append(
                f"worker_start_ray_commands: FAICE_POOLS names {host}, which is not in provider.worker_ips"
            )
    counts = {p: sum(v == p for v in pools.values()) for p in POOLS}
    if workers and not counts["train"]:
        report.errors.append(
            "worker_start_ray_commands: no worker is in the train pool, so no trial could run"
        )
    if workers and not counts["eval"]:
        report.notes.append(
            "no evaluation machine: searches with evaluations need evaluation.fallback_cpus (training nodes "
            "evaluate) or config.eval.where=inline"
        )

    if "start-node.sh" not in head_text or "--head" not in head_text:
        report.errors.append("head_start_ray_commands: start the head with cluster/start-node.sh --head")
    if "train_slot" in head_text:
        report.errors.append(
            "head_start_ray_commands: the head advertises train_slot directly; the head trains only when "
            "asked with start-node.sh --head --pool train"
        )
    if re.search(r"--pool[= ]train", head_text):
        report.notes.append("the head also trains (asked with --pool train)")
    if "--autoscaling-config" not in head_text:
        report.notes.append(
            "head_start_ray_commands: no --autoscaling-config, so idle workers are never released"
        )

    excluded = (
        {str(x) for x in doc.get("rsync_exclude") or []}
        if isinstance(doc.get("rsync_exclude"), list)
        else set()
    )
    filters = (
        {str(x) for x in doc.get("rsync_filter") or []}
        if isinstance(doc.get("rsync_filter"), list)
        else set()
    )
    if ".env" not in excluded and ".gitignore" not in filters:
        report.errors.append(
            'rsync_exclude: `ray up` would copy .env (secrets) to every machine; add ".env" to rsync_exclude '
            'or rsync_filter: [".gitignore"]'
        )
    everything = yaml.safe_dump(doc, width=10**6)
    report.errors += insecure_settings(everything)
    for m in _SECRET_VALUE.finditer(everything):
        report.errors.append(f"{m.group(1)} is written in the file; keep it in the machines' environment")
    min_workers = doc.get("min_workers", len(workers))
    if provider.get("type") == "local" and isinstance(min_workers, int) and min_workers < len(workers):
        # Ray's local provider has one node type whose resources it learns as CPU/GPU/memory only: no
        # train_slot or eval_slot, so a trial or evaluation waiting for one never launches a machine (shown
        # with Ray's own bin-packing in tests/cluster/test_autoscaling.py). A worker below min_workers is
        # not started at `ray up`, and one released when idle never comes back.
        report.errors.append(
            f"min_workers {min_workers}: Ray's local provider cannot start a worker for train_slot or "
            f"eval_slot demands, so {len(workers) - min_workers} of the {len(workers)} worker_ips would never "
            f"run a trial; set min_workers: {len(workers)} (per-pool autoscaling: cluster/kuberay.yaml)"
        )
    report.notes.append(
        f"{len(workers)} worker(s): {counts['train']} train, {counts['eval']} eval; "
        f"idle_timeout_minutes {doc.get('idle_timeout_minutes', 5)}"
    )
    return report


def check_cluster(doc: dict) -> Report:
    """Check a cluster YAML of either kind; a Report with its errors and notes."""
    if not isinstance(doc, dict):
        return Report("unknown", errors=["<top>: a cluster YAML is a mapping"])
    if doc.get("kind") == "RayCluster":
        return Report("KubeRay RayCluster", errors=check_kuberay(doc))
    if "provider" in doc:
        return check_launcher_config(doc)
    return Report(
        "unknown",
        errors=[
            "<top>: neither a Ray cluster-launcher config (has `provider:`) nor a KubeRay RayCluster (`kind: RayCluster`)"
        ],
    )


def check_command(paths: list[str]) -> int:
    """`faice cluster check PATH...`: prints what each file holds; 1 if any has errors."""
    failed = 0
    for path in paths:
        try:
            doc = read_yaml(path, "cluster file")
        except (OSError, ConfigError) as e:
            print(f"{path}: error: cannot read: {e}")
            failed += 1
            continue
        report = check_cluster(doc)
        for note in report.notes:
            print(f"{path}: note: {note}")
        for error in report.errors:
            print(f"{path}: error: {error}")
        print(f"{path}: {'FAILED' if report.errors else 'ok'} ({report.kind}, {len(report.errors)} error(s))")
        failed += bool(report.errors)
    return 1 if failed else 0
