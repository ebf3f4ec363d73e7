"""Checks of a KubeRay `RayCluster` (cluster/kuberay.yaml): the CRD fields we use, and faice's pools.

The schema (faice/cluster_schemas/raycluster.schema.json) is the subset of KubeRay's CRD that our file
uses, strict where a typo would silently do nothing. Conventions: every worker group advertises exactly
one pool resource (train_slot or eval_slot) in rayStartParams.resources, there is a train group and an
eval group, the head advertises neither, min <= max replicas, token auth in every container, and secrets
only from Kubernetes Secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

from faice.schemas import schema_errors

SCHEMA = Path(__file__).resolve().parent / "cluster_schemas" / "raycluster.schema.json"
SLOTS = {"train_slot": "train", "eval_slot": "eval"}
SECRETS = ("WANDB_API_KEY", "RAY_AUTH_TOKEN")


def start_resources(params: dict, where: str, errors: list[str]) -> dict:
    """rayStartParams.resources: KubeRay's quoted JSON string ('"{\\"train_slot\\": 1}"') as a dict."""
    text = (params or {}).get("resources")
    if not text:
        return {}
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):  # KubeRay passes the value to the shell quoted
        text = text[1:-1].replace('\\"', '"')
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        errors.append(f"{where}.rayStartParams.resources: not a JSON mapping: {params['resources']!r}")
        return {}
    return value if isinstance(value, dict) else {}


def _containers(group: dict) -> list[dict]:
    return ((group.get("template") or {}).get("spec") or {}).get("containers") or []


def check_kuberay(doc: dict) -> list[str]:
    """Errors of a RayCluster document (empty = fine)."""
    errors = schema_errors(doc, json.loads(SCHEMA.read_text()))
    if errors:  # the conventions below read fields of the shapes the schema demands
        return errors
    try:
        return _check_conventions(doc)
    except (TypeError, AttributeError, ValueError) as e:  # a shape the schema subset does not pin down
        return [
            f"a field has an unexpected type ({type(e).__name__}: {e}); compare with cluster/kuberay.yaml"
        ]


def _check_conventions(doc: dict) -> list[str]:
    errors: list[str] = []
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    head = spec.get("headGroupSpec") if isinstance(spec.get("headGroupSpec"), dict) else {}
    groups = [g for g in spec.get("workerGroupSpecs") or [] if isinstance(g, dict)]

    head_slots = set(start_resources(head.get("rayStartParams"), "spec.headGroupSpec", errors)) & set(SLOTS)
    asked = ((doc.get("metadata") or {}).get("annotations") or {}).get("faice/head-trains") == "true"
    if head_slots and not (head_slots == {"train_slot"} and asked):
        errors.append(
            f"spec.headGroupSpec.rayStartParams.resources: the head advertises {sorted(head_slots)}; the head runs "
            'the driver and trial actors (a train_slot needs the annotation faice/head-trains: "true")'
        )
    pools = []
    for i, group in enumerate(groups):
        where = f"spec.workerGroupSpecs[{i}]"
        slots = set(start_resources(group.get("rayStartParams"), where, errors)) & set(SLOTS)
        if len(slots) != 1:
            errors.append(
                f"{where}.rayStartParams.resources: group {group.get('groupName')!r} must advertise exactly one of "
                f"train_slot, eval_slot (got {sorted(slots) or 'none'})"
            )
        pools += [SLOTS[s] for s in slots]
        lo, hi = group.get("minReplicas"), group.get("maxReplicas")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            errors.append(f"{where}: minReplicas {lo} > maxReplicas {hi}")
    for pool in ("train", "eval"):
        if pool not in pools:
            errors.append(
                f"spec.workerGroupSpecs: no {pool} group (rayStartParams.resources with {pool}_slot)"
            )

    for where, group in [("spec.headGroupSpec", head)] + [
        (f"spec.workerGroupSpecs[{i}]", g) for i, g in enumerate(groups)
    ]:
        for j, container in enumerate(_containers(group)):
            at = f"{where}.template.spec.containers[{j}].env"
            env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
            if (env.get("RAY_AUTH_MODE") or {}).get("value") != "token":
                errors.append(f"{at}: RAY_AUTH_MODE must be 'token' in every container")
            for name in SECRETS:
                if name in env and "value" in env[name]:
                    errors.append(
                        f"{at}: {name} has a literal value; take it from a Secret (valueFrom.secretKeyRef)"
                    )
    return errors


def _quantity(value) -> float:
    """A Kubernetes CPU quantity ("8", "500m", 2) as a number of CPUs."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def autoscaler_node_types(doc: dict, **per_pool: dict) -> dict[str, dict]:
    """Ray autoscaler `available_node_types` for the worker groups of a RayCluster document: one node
    type per group (named after it), advertising the group's pool slot and the CPUs and GPUs of its pods,
    between its minReplicas and maxReplicas. `per_pool` replaces fields of a pool's node type, e.g.
    train={"resources": {"CPU": 1}, "max_workers": 2} to simulate the pools on a small machine: the
    slots themselves always come from the document, so a simulation cannot drift from it."""
    errors: list[str] = []
    types: dict[str, dict] = {}
    for group in doc["spec"]["workerGroupSpecs"]:
        params = group.get("rayStartParams") or {}
        slots = {k: v for k, v in start_resources(params, group["groupName"], errors).items() if k in SLOTS}
        (limits,) = [(c.get("resources") or {}).get("limits") or {} for c in _containers(group)][:1] or [{}]
        resources = {"CPU": _quantity(limits.get("cpu", params.get("num-cpus", 1))),
                     "GPU": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}  # fmt: skip
        node = {"resources": resources, "min_workers": group.get("minReplicas", 0),
                "max_workers": group.get("maxReplicas", 1), "node_config": {}}  # fmt: skip
        pool = SLOTS[next(iter(slots))] if len(slots) == 1 else None
        extra = dict(per_pool.get(pool) or {})
        node["resources"].update(extra.pop("resources", {}))
        node.update(extra)
        node["resources"].update(slots)
        node["resources"] = {k: v for k, v in node["resources"].items() if v}
        types[group["groupName"]] = node
    if errors:
        raise ValueError("; ".join(errors))
    return types
