"""`python -m jobs.sweep`: the search launcher as a Ray job (same arguments as `python -m tune.search`).

ray job submit --working-dir . -- python -m jobs.sweep --space tune/spaces/demo-asha.yaml --storage /shared/s
"""

import sys

from tune.search import main

if __name__ == "__main__":
    sys.exit(main())
