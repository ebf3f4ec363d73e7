"""`faice cluster check`: every YAML in cluster/ passes Ray's own validation path and our pool
conventions; broken copies fail with messages that name the key."""

import copy
from pathlib import Path

import pytest
import yaml

from faice.cluster import check_cluster, parse_pools

REPO = Path(__file__).resolve().parents[2]
LAB = yaml.safe_load((REPO / "cluster" / "lab.yaml").read_text())
CLUSTER_YAMLS = sorted(p for p in (REPO / "cluster").rglob("*.yaml"))


def test_every_cluster_yaml_passes_the_check():
    assert CLUSTER_YAMLS, "no cluster YAMLs"
    for path in CLUSTER_YAMLS:
        report = check_cluster(yaml.safe_load(path.read_text()))
        assert not report.errors, (path.name, report.errors)


def test_launcher_configs_pass_rays_own_prepare_and_validate():
    """What `ray up` runs on the file: the local provider's preparation, defaults, then the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    for path in CLUSTER_YAMLS:
        doc = yaml.safe_load(path.read_text())
        if "provider" in doc:
            prepared = prepare_config(doc)
            validate_config(prepared)
            node_type = next(iter(prepared["available_node_types"].values()))
            assert node_type["min_workers"] == node_type["max_workers"] == len(doc["provider"]["worker_ips"])


def test_lab_yaml_gives_every_worker_a_pool():
    pools = parse_pools("\n".join(LAB["worker_start_ray_commands"]))
    assert set(pools) == set(LAB["provider"]["worker_ips"])
    assert set(pools.values()) == {"train", "eval"}


def _broken(edit) -> list[str]:
    doc = copy.deepcopy(LAB)
    edit(doc)
    return check_cluster(doc).errors


def _set_workers(doc, command):
    doc["worker_start_ray_commands"][-1] = command


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda d: d.update(idle_timeout_minute=5),
            "Additional properties are not allowed ('idle_timeout_minute'",
        ),
        (
            lambda d: d.update(idle_timeout_minutes="soon"),
            "idle_timeout_minutes: 'soon' is not of type 'number'",
        ),
        (
            lambda d: d.update(min_workers=0),
            "min_workers 0: Ray's local provider cannot start a worker for train_slot or eval_slot demands",
        ),
        (
            lambda d: d["provider"]["worker_ips"].append("10.0.0.14"),
            "worker 10.0.0.14 has no pool in FAICE_POOLS",
        ),
        (
            lambda d: _set_workers(
                d, 'FAICE_POOLS="10.0.0.11=train 10.0.0.12=gpu 10.0.0.13=eval" bash start-node.sh'
            ),
            "gives 10.0.0.12 the pool 'gpu'; valid pools: train, eval",
        ),
        (
            lambda d: _set_workers(
                d, 'FAICE_POOLS="10.0.0.11=eval 10.0.0.12=eval 10.0.0.13=eval" bash start-node.sh'
            ),
            "no worker is in the train pool",
        ),
        (
            lambda d: _set_workers(d, "ray start --address=$RAY_HEAD_IP:6379"),
            "workers must start with cluster/start-node.sh",
        ),
        (
            lambda d: d["head_start_ray_commands"].append(
                "ray start --head --resources='{\"train_slot\": 1}'"
            ),
            "the head advertises train_slot directly",
        ),
        (
            lambda d: d["head_start_ray_commands"].append("RAY_AUTH_MODE=disabled ray status"),
            "RAY_AUTH_MODE=disabled: token authentication must stay on",
        ),
        (
            lambda d: d["setup_commands"].append("export WANDB_API_KEY=abc123"),
            "WANDB_API_KEY is written in the file",
        ),
        (lambda d: d["provider"].pop("head_ip"), "provider.head_ip: missing"),
        # every spelling of an open dashboard or a non-token auth mode
        *[
            (lambda d, c=cmd: d["head_start_ray_commands"].append(c), msg)
            for cmd, msg in [
                ("ray start --head --dashboard-host=0.0.0.0", "--dashboard-host 0.0.0.0"),
                ('ray start --head --dashboard-host="0.0.0.0"', "--dashboard-host 0.0.0.0"),
                ("ray start --head --dashboard-host '0.0.0.0'", "--dashboard-host 0.0.0.0"),
                ("ray start --head --dashboard-host ::", "--dashboard-host ::"),
                (
                    "FAICE_DASHBOARD_HOST=0.0.0.0 bash cluster/start-node.sh --head",
                    "FAICE_DASHBOARD_HOST 0.0.0.0",
                ),
                ("export FAICE_DASHBOARD_HOST='0.0.0.0'", "FAICE_DASHBOARD_HOST 0.0.0.0"),
                ('export RAY_AUTH_MODE="disabled"', "RAY_AUTH_MODE=disabled:"),
                ("RAY_AUTH_MODE='' ray status", "RAY_AUTH_MODE=(empty):"),
                ("env RAY_AUTH_MODE=none ray start", "RAY_AUTH_MODE=none:"),
            ]
        ],
        (lambda d: d.update(rsync_exclude=[".venv"], rsync_filter=[]), "would copy .env (secrets)"),
        (
            lambda d: _set_workers(d, 'FAICE_POOLS="10.0.0.11=train bash start-node.sh'),
            "FAICE_POOLS: cannot read",
        ),
    ],
)
def test_broken_lab_yaml_fails_naming_the_key(edit, message):
    errors = _broken(edit)
    assert any(message in e for e in errors), errors


def test_the_cli_exits_nonzero_on_errors(tmp_path, capsys):
    from faice.cli import main

    bad = tmp_path / "bad.yaml"
    doc = copy.deepcopy(LAB)
    doc["provider"]["worker_ips"].append("10.0.0.99")
    bad.write_text(yaml.safe_dump(doc))
    code = main(["cluster", "check", str(REPO / "cluster" / "lab.yaml"), str(bad)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "lab.yaml: ok" in out and "bad.yaml: error: worker_start_ray_commands: worker 10.0.0.99" in out


def test_the_shipped_lab_yaml_keeps_every_gitignored_path_off_the_machines():
    ignored = [ln.strip().rstrip("/") for ln in (REPO / ".gitignore").read_text().splitlines() if ln.strip()]
    assert ".gitignore" in LAB["rsync_filter"]
    missing = [p for p in ignored if p not in LAB["rsync_exclude"] and f"**/{p}" not in LAB["rsync_exclude"]]
    assert not missing, f"lab.yaml's rsync_exclude lacks {missing} (in .gitignore)"
