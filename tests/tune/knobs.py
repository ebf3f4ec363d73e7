"""Study knobs end to end: every parameter a space of tune/spaces/ varies, run at two of the values the space
itself defines, from trial configs built as the launcher builds them, must change what it controls.

`knob_pairs(space)` lists (key, config A, config B): for a grid key, its first two values; for a key the
variants set, one variant's trial config and the same config with only that key set to another variant's
value (the two whole variants when the key cannot change alone, e.g. crop_scale needs a crop).
`differs(key, a, b)` trains both their (2-step) budget (training knobs: the weights must differ) or samples one trained
model with both (sampling knobs, sample.* and eval.*: the samples of the same weights and seed must differ).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tune.tiny_search import DEBUG_SIZE, fast_metric

SPEED = [o for o in DEBUG_SIZE if not o.startswith("budget.max_steps")] + [
    "budget.max_steps=2",
    "config.train.warmup_steps=1",
]


def knob_pairs(space: str, storage: Path, *overrides: str) -> list[tuple[str, object, object]]:
    """(key, config A, config B) for every key the space varies (see the module doc)."""
    import yaml

    from faice.config import ConfigError
    from faice.tasks import task_of
    from faice.tasks.applies import get_key
    from tune.search import prepare_search
    from tune.space import load_space

    spec = load_space(space, ["scale=tiny", *SPEED, *fast_metric(space), *overrides])
    base_tree, fixed, _ = prepare_search(spec, Path(storage))

    def trial(params, extra=()):
        cfg = spec.trial_config(base_tree, [*fixed, *extra], params, "knob")  # extra last: it wins
        task_of(cfg)  # refused as a run would refuse it
        return cfg

    def spelled(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()

    pairs = []
    for p in spec.space:
        if p.key == "seed":
            continue
        if p.key != "variant":
            values = list(p.args) if p.kind == "grid" else list(p.probes)
            pairs.append((p.key, trial({p.key: values[0]}), trial({p.key: values[1]})))
            continue
        configs = {name: trial({"variant": name}) for name in p.args}
        for key in sorted({k for name in p.args for k in spec.variants[name]}):
            values = {name: get_key(cfg, key) for name, cfg in configs.items()}  # unset: the base's value
            if len({spelled(v) for v in values.values()}) < 2:
                continue  # every variant runs the same value: not a knob of this space
            found = None
            for a, va in values.items():
                for vb in values.values():
                    if found or vb is None or spelled(va) == spelled(vb):
                        continue  # (null would mean the preset's value, not the other variant's)
                    try:
                        found = (configs[a], trial({"variant": a}, [f"{key}={spelled(vb)}"]))
                    except ConfigError:
                        continue  # this key cannot change alone from this variant
            if found is None:  # only together with the variant's other keys (e.g. a crop scale needs a crop)
                a, b = next(
                    (a, b) for a in values for b in values if spelled(values[a]) != spelled(values[b])
                )
                found = (configs[a], configs[b])
            pairs.append((key, *found))
    return pairs


def trained(cfg):
    """The model after STEPS real training steps of `cfg` (its latents cached first), on this CPU."""
    from accelerate import Accelerator

    from faice.train.loop import _batches
    from faice.train.state import build_state, train_step

    if cfg.latent.autoencoder:
        from faice.data.latents import ensure_latents

        ensure_latents(cfg, log=lambda *a: None)
    state = build_state(cfg, Accelerator(cpu=True))
    batches = _batches(state.loader, state.progress)
    for _ in range(cfg.train.max_steps):  # the search's budget (budget.max_steps=2, or the knob itself)
        train_step(state, batches)
    return state.model


def outputs(model, cfg, evaluation: bool) -> torch.Tensor:
    """What the model produces for `cfg`: its evaluation samples (eval.*), or its samples (sample.*)."""
    from faice.sampling import generate

    if evaluation:
        from faice.tasks import task_of

        steps = cfg.eval.num_inference_steps or cfg.sample.num_inference_steps
        over = {"sampler": cfg.eval.sampler or cfg.sample.sampler, "num_inference_steps": steps}
        return task_of(cfg).generate(model, cfg, 2, cfg.eval.seed, 2, None, over)
    return generate(model, cfg, 2, cfg.sample.seed, batch_size=2)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]) for k in sa
    )


def differs(key: str, a, b) -> bool:
    """True when the two configs' runs differ where `key` acts: samples of the same weights for sample.* /
    eval.* keys, trained weights for the others."""
    if key.startswith(("sample.", "eval.")):
        model = trained(a)
        torch.manual_seed(0)
        first = outputs(model, a, key.startswith("eval."))
        torch.manual_seed(0)
        return not torch.allclose(first, outputs(model, b, key.startswith("eval.")))
    return not same_weights(trained(a), trained(b))
