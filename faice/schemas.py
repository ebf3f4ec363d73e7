"""JSON-schema checking shared by the cluster-file checks (faice.cluster, faice.kuberay)."""

from __future__ import annotations


def schema_errors(doc: dict, schema: dict) -> list[str]:
    """Every JSON-schema violation as 'dotted.path: message' (path '<top>' for the document itself)."""
    import jsonschema

    errors = []
    for e in sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.path).lstrip(".")
        errors.append(f"{where or '<top>'}: {e.message}")
    return errors
