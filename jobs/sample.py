"""`python -m jobs.sample`: `faice sample` on a cluster node with a GPU when there is one.

ray job submit --working-dir . -- python -m jobs.sample runs/searches/demo-asha/runs/<trial> --n 64
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """`python -m jobs.sample`: `faice sample` as a Ray job on a GPU node; exit code."""
    from jobs.local_ray import apply_local_env

    apply_local_env()
    import ray

    from jobs.ray_train import connect

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nArguments are those of `faice sample` (see `faice sample --help`).")
        return 0
    connect(None, None)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0

    @ray.remote(num_gpus=gpus, num_cpus=1)
    def sample(args: list[str]) -> int:
        from faice.cli import main as faice_main

        return faice_main(["sample", *args])

    return ray.get(sample.remote(argv))


if __name__ == "__main__":
    sys.exit(main())
