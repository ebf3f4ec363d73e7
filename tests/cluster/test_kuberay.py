"""cluster/kuberay.yaml against the KubeRay CRD fields we use and faice's pool conventions."""

import copy
from pathlib import Path

import pytest
import yaml

from faice.kuberay import check_kuberay, start_resources

DOC = yaml.safe_load((Path(__file__).resolve().parents[2] / "cluster" / "kuberay.yaml").read_text())


def test_the_shipped_raycluster_passes():
    assert check_kuberay(DOC) == []
    groups = {g["groupName"]: g for g in DOC["spec"]["workerGroupSpecs"]}
    assert start_resources(groups["train"]["rayStartParams"], "", []) == {"train_slot": 1}
    assert start_resources(groups["eval"]["rayStartParams"], "", []) == {"eval_slot": 1}
    assert (
        DOC["spec"]["enableInTreeAutoscaling"] and DOC["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    )
    assert all(g["minReplicas"] == 0 for g in groups.values())  # idle GPUs are released


def _worker(doc, i=0):
    return doc["spec"]["workerGroupSpecs"][i]


def _env(doc, name, **entry):
    env = _worker(doc)["template"]["spec"]["containers"][0]["env"] = copy.deepcopy(
        _worker(doc)["template"]["spec"]["containers"][0]["env"]
    )
    env[:] = [e for e in env if e["name"] != name] + [{"name": name, **entry}]


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            lambda d: _worker(d).update(replica=2),
            "spec.workerGroupSpecs[0]: Additional properties are not allowed ('replica'",
        ),
        (
            lambda d: _worker(d).update(maxReplicas="four"),
            "spec.workerGroupSpecs[0].maxReplicas: 'four' is not of type 'integer'",
        ),
        (
            lambda d: _worker(d)["rayStartParams"].update({"num-gpus": 1}),
            "rayStartParams.num-gpus: 1 is not of type 'string'",
        ),
        (
            lambda d: _worker(d)["rayStartParams"].pop("resources"),
            "group 'train' must advertise exactly one of train_slot, eval_slot",
        ),
        (
            lambda d: _worker(d, 1)["rayStartParams"].update(resources='"{\\"train_slot\\": 1}"'),
            "no eval group",
        ),
        (
            lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update(
                resources='"{\\"train_slot\\": 1}"'
            ),
            "the head advertises ['train_slot']",
        ),
        (
            lambda d: _worker(d).update(minReplicas=5),
            "spec.workerGroupSpecs[0]: minReplicas 5 > maxReplicas 4",
        ),
        (lambda d: _env(d, "WANDB_API_KEY", value="abc"), "WANDB_API_KEY has a literal value"),
        (lambda d: _env(d, "RAY_AUTH_MODE", value="disabled"), "RAY_AUTH_MODE must be 'token'"),
        (lambda d: d["spec"]["autoscalerOptions"].update(upscalingMode="Fast"), "'Fast' is not one of"),
    ],
)
def test_broken_copies_fail_naming_the_field(edit, message):
    doc = copy.deepcopy(DOC)
    edit(doc)
    errors = check_kuberay(doc)
    assert any(message in e for e in errors), errors


def test_the_head_may_train_when_annotated():
    doc = copy.deepcopy(DOC)
    doc["spec"]["headGroupSpec"]["rayStartParams"]["resources"] = '"{\\"train_slot\\": 1}"'
    doc["metadata"]["annotations"] = {"faice/head-trains": "true"}
    assert check_kuberay(doc) == []


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["spec"].update(workerGroupSpecs=5),
        lambda d: _worker(d)["template"]["spec"].update(containers={"a": 1}),
        lambda d: d["spec"]["headGroupSpec"].update(rayStartParams=[1]),
        lambda d: _worker(d).update(replicas="many"),
        lambda d: d.update(spec=None),
    ],
)
def test_wrongly_typed_fields_are_errors_not_tracebacks(edit):
    doc = copy.deepcopy(DOC)
    edit(doc)
    errors = check_kuberay(doc)
    assert errors and all(isinstance(e, str) and "\n" not in e for e in errors), errors
