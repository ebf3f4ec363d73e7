"""Search spaces: a YAML file saying which config keys a Ray Tune search varies, how, on what budget.

Format (only `base` and `space` are required; defaults in brackets)::

    # header comment: the question this search answers
    name: tiny-lr            # search name [file stem]; also the W&B group (log.group) of its trials
    base: demo.yaml          # base config: a path (cwd, then the space's folder) or a file name in configs/
    overrides:               # fixed dotted config overrides, applied to the base for every trial [{}]
      train.checkpoint_every: 100
    metric: loss             # metric the trials report ["loss"]; e.g. kid[inception] (ASHA on the pool's KID)
    mode: min                # min | max ["min"]
    budget:
      num_samples: 4         # trials; with grid params, repeats of the full grid [1]
      max_steps: 300         # train.max_steps of every trial [null = the base config's]
      time_budget_s: null    # time limit of the whole search in seconds [null = none]
    scheduler:
      name: asha             # fifo | asha ["fifo"]
      grace_period: 100      # asha: training steps before a trial may be stopped (time_attr `step`) [1]
      reduction_factor: 2    # asha: 1/reduction_factor of the trials go on at each rung [2]
    searcher:
      name: random           # random | grid | optuna ["random"]
      seed: 0                # [null = unseeded]
      max_concurrent: 0      # trials at once [0 = as many as fit]
    trial:                   # resources of ONE trial
      num_workers: 1         # [1]
      cpus_per_worker: 1     # [1]
      gpus_per_worker: 0     # [0]
      resources_per_worker: {}  # custom resources, e.g. {train_slot: 1} [{}]
      max_failures: 3        # restarts of a trial after a lost worker/machine, -1 = unlimited [0]
      runner: auto           # tune (loop in the trial actor, 1 worker) | ray-train | auto (tune for 1 worker) [auto]
    evaluation:              # the evaluation pool, used when the trials' eval.num_samples > 0
      resource: eval_slot    # custom resource only evaluation nodes advertise ["eval_slot"]
      cpus: 1                # CPUs per evaluation task [1]
      gpus: 0                # GPUs per evaluation task [0]
      max_attempts: 3        # a failed evaluation is retried [3]
      keep: latest           # latest | all: evals that fall behind keep only a trial's newest [latest]
      fallback_cpus: 0       # no eval nodes: >0 = evaluate on training nodes' CPUs, 0 = refuse [0]
      also_score_best: []    # extractors that also score the best trial at the end, e.g. [inception] [[]]
      also_score_overrides: []  # e.g. [eval.reference_images=256] for that scoring [[]]
    space:                   # dotted config key -> exactly one distribution
      train.lr: {loguniform: [1.0e-4, 3.0e-3]}   # float field, 0 < low < high
      train.ema_decay: {uniform: [0.99, 0.999]}  # float field, low < high
      train.seed: {randint: [0, 100]}            # int field, low <= x < high (Ray's exclusive upper bound)
      model.name: {choice: [unet-tiny, debug]}   # one value sampled per trial
      diffusion.beta_schedule: {grid: [linear, cosine]}  # every value, num_samples times each

Searchers: `random` and `grid` both run Ray's variant generator (grid params crossed, the others
sampled); `grid` also requires every param to be a grid, so the search is exhaustive. `optuna`
(`pip install optuna`) takes no grid params.

`load_space(path, overrides)` overrides set keys of the search file (`budget.num_samples=8`,
`scheduler.name=fifo`, `space.train.lr={choice: [1.0e-3]}`) or, with the prefix `config.`, add fixed
config overrides after the file's own (`config.train.batch_size=16`).

A trial's config is base + `log.group=<name>` + overrides + `train.max_steps=<budget.max_steps>` + its
params. All of it is checked against faice.config before Ray is imported: every choice/grid value and
both bounds of each range are applied to the base config, so a typo fails here, not in trial 7 of 9.
"""

from faice.profiles import PROFILES_DIR, TrialResources, load_profile, profile_names
from tune.space.layers import (
    SCALES_DIR,
    SPACES_DIR,
    apply_profile,
    apply_scale,
    from_dict,
    load_space,
    scale_names,
)
from tune.space.links import links, resolve_links
from tune.space.params import describe_space, to_param_space
from tune.space.spec import (
    KINDS,
    LINK,
    LINK_MARK,
    SEED,
    VARIANT,
    Budget,
    EvalPool,
    Param,
    SchedulerSpec,
    SearcherSpec,
    SearchSpec,
    render_value,
)

__all__ = [
    "PROFILES_DIR",
    "TrialResources",
    "load_profile",
    "profile_names",
    "Budget",
    "EvalPool",
    "KINDS",
    "LINK",
    "LINK_MARK",
    "Param",
    "SCALES_DIR",
    "SEED",
    "SPACES_DIR",
    "SchedulerSpec",
    "SearchSpec",
    "SearcherSpec",
    "VARIANT",
    "apply_profile",
    "apply_scale",
    "describe_space",
    "from_dict",
    "links",
    "load_space",
    "render_value",
    "resolve_links",
    "scale_names",
    "to_param_space",
]
