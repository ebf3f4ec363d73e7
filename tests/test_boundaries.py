"""The library never imports Ray: Ray is orchestration around faice, in tune/ and jobs/."""

import ast
import subprocess
import sys
from pathlib import Path

FAICE = Path(__file__).resolve().parent.parent / "faice"


def test_no_ray_import_in_library_source():
    offenders = []
    for path in FAICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}:{node.lineno}" for n in names if n == "ray" or n.startswith("ray.")]
    assert not offenders, f"faice/ imports ray: {offenders}"


def test_importing_the_library_does_not_load_ray():
    code = (
        "import sys, faice.cli, faice.train.loop, faice.sampling, faice.export, faice.data.prepare\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
