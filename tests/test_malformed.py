"""Every bad input is one line: property-based malformed overrides, config files and search spaces.

Each generated input is malformed by construction (an unknown key, a value no field type accepts, YAML
that does not parse or is not a mapping, a space whose parts have the wrong shape). Through the real entry
points (`faice config show`, `python -m tune.search --check`), in-process: exit code != 0, no traceback,
and the last line of stderr is the error. The hand-picked seeds of the reliability issue come first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import types
import typing
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faice.config import Config

REPO = Path(__file__).resolve().parents[1]
DEBUG = str(REPO / "configs" / "debug.yaml")
YAML_WORDS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf"}
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def run(entry, argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr + stdout) of an entry point called in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = entry(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
    return code, err.getvalue() + out.getvalue()


def faice_cli(argv: list[str]) -> int:
    from faice.cli import main

    return main(argv)


def tune_check(argv: list[str]) -> int:
    from tune.search import main

    return main([*argv, "--check"])


def assert_one_line_error(code: int, output: str, given_input) -> None:
    assert code != 0, f"accepted: {given_input!r}\n{output[-2000:]}"
    assert "Traceback" not in output, f"traceback for {given_input!r}:\n{output[-3000:]}"
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert lines and "error" in lines[-1], f"no error line for {given_input!r}: {output[-1000:]}"


# ---------------------------------------------------------------------------- the config's fields


def _fields(cls=Config, prefix: str = "") -> dict[str, typing.Any]:
    out = {}
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(_fields(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (tp, f.metadata.get("choices"))
    return out


FIELDS = _fields()
SECTIONS = sorted({k.split(".")[0] for k in FIELDS if "." in k})


def _scalar(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _keys(pred) -> list[str]:
    return sorted(k for k, (tp, _) in FIELDS.items() if pred(_scalar(tp)))


NUMBER_KEYS = _keys(lambda tp: tp in (int, float))
BOOL_KEYS = _keys(lambda tp: tp is bool)
LIST_KEYS = _keys(lambda tp: typing.get_origin(tp) is list)
CHOICE_KEYS = sorted(
    k for k, (tp, choices) in FIELDS.items() if typing.get_origin(_scalar(tp)) is Literal or choices
)
POSITIVE_KEYS = ["data.resolution", "train.batch_size", "train.max_steps", "train.grad_accum",
                 "train.log_every", "train.keep_checkpoints", "diffusion.num_train_timesteps",
                 "sample.num_inference_steps", "train.lr"]  # fmt: skip
NAME_KEYS = ["name", "train.run_name"]

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzXYZ", min_size=1, max_size=12).filter(
    lambda w: w.lower() not in YAML_WORDS and not w.lower().startswith("inf")
)


def _choices(key: str) -> set:
    tp, choices = FIELDS[key]
    scalar = _scalar(tp)
    allowed = set(typing.get_args(scalar)) if typing.get_origin(scalar) is Literal else set()
    return allowed | set(choices() if choices else ())


bad_override = st.one_of(
    # an unknown key, in a known section or an unknown one
    st.builds(lambda k, w: f"{k}{w}=1", st.sampled_from(sorted(FIELDS)), words),
    st.builds(lambda w, k: f"{w}.{k}=1", words.filter(lambda w: w not in SECTIONS and w != "name"), words),
    # words where a number, a boolean or a choice must be
    st.builds(lambda k, w: f"{k}={w}", st.sampled_from(NUMBER_KEYS), words),
    st.builds(lambda k, w: f"{k}={w}", st.sampled_from(BOOL_KEYS), words.filter(lambda w: w.lower() not in {"1", "0"})),
    st.builds(lambda k, w: f"{k}={w}z", st.sampled_from(CHOICE_KEYS), words).filter(
        lambda o: o.partition("=")[2] not in _choices(o.partition("=")[0])
    ),
    # not finite, not positive, not a list, not a mapping
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(_keys(lambda tp: tp is float)),
              st.sampled_from(["nan", ".nan", "inf", "-inf", ".inf", "-.inf", "1e999"])),
    st.builds(lambda k, n: f"{k}={-n}", st.sampled_from(POSITIVE_KEYS), st.integers(0, 10**6)),
    st.builds(lambda k, a, b: f"{k}=[{a},{b}", st.sampled_from(LIST_KEYS), st.integers(), st.integers()),
    st.builds(lambda k: f"{k}={{a: 1}}", st.sampled_from(NUMBER_KEYS + BOOL_KEYS + CHOICE_KEYS)),
    st.builds(lambda s, n: f"{s}={n}", st.sampled_from(SECTIONS), st.integers()),
    st.builds(lambda k, w: f"{k}.{w}=1", st.sampled_from(NUMBER_KEYS), words),
    # names that would leave their folder
    st.builds(lambda k, w: f"{k}={w}", st.sampled_from(NAME_KEYS),
              st.sampled_from(["..", "../x", "a/b", "/abs", "x/../../y", "~x", "a\\b"])),
    # not key=value at all
    words,
    st.builds(lambda w: f"={w}", words),
)  # fmt: skip


SEEDS = [
    "model.channel_mult=[1,2",
    "train.lr=nan",
    "train.run_name=../../escape",
    "train=3",
    "data.hflip=maybe",
]


@pytest.mark.parametrize("override", SEEDS)
def test_the_reported_malformed_overrides_are_one_line_errors(override):
    assert_one_line_error(*run(faice_cli, ["config", "show", "--config", DEBUG, override]), override)


@pytest.mark.timeout(300)
def test_malformed_overrides_are_one_line_errors():
    seen = []

    @SETTINGS
    @given(bad_override)
    def check(override):
        seen.append(override)
        assert_one_line_error(*run(faice_cli, ["config", "show", "--config", DEBUG, override]), override)

    check()
    assert len(seen) >= 200, len(seen)


# ---------------------------------------------------------------------------- config files


def _nested(override: str) -> dict:
    """The YAML tree a malformed override would be as a config file."""
    key, _, raw = override.partition("=")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    tree: dict = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return tree


not_yaml = st.sampled_from(
    ["a: [1, 2", "model: {name: debug", "\tdata: 1", "a: b: c", "- [", "key: 'open", "{", ": :", "@x"]
)
not_a_mapping = st.one_of(
    st.lists(st.integers(), min_size=1).map(yaml.safe_dump),
    st.integers().map(str),
    words.map(lambda w: f"'{w}'"),
)
binary = st.binary(min_size=1, max_size=64).filter(lambda b: _not_utf8(b))


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return True
    return False


# a section given a scalar or a list (`autoencoder: 0` once read as an empty section)
SECTIONS = [f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(f.default_factory)]
section_not_a_mapping = st.builds(
    lambda section, value: yaml.safe_dump({section: value}),
    st.sampled_from(SECTIONS),
    st.one_of(
        st.integers(), st.booleans(), st.just(""), words, st.lists(st.integers(), min_size=0, max_size=2)
    ),
)

bad_config_file = st.one_of(
    section_not_a_mapping,
    bad_override.filter(lambda o: "=" in o and o.partition("=")[0]).map(lambda o: yaml.safe_dump(_nested(o))),
    not_yaml,
    not_a_mapping,
    binary,
)


@pytest.mark.timeout(300)
def test_malformed_config_files_are_one_line_errors(tmp_path):
    seen = []
    path = tmp_path / "bad.yaml"

    @SETTINGS
    @given(bad_config_file)
    def check(content):
        seen.append(content)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert_one_line_error(*run(faice_cli, ["config", "show", "--config", str(path)]), content)

    check()
    assert len(seen) >= 200, len(seen)
    for content in ("autoencoder: 0\n", "model: false\n", "train: []\n"):  # seeds the property found
        path.write_text(content)
        assert_one_line_error(*run(faice_cli, ["config", "show", "--config", str(path)]), content)
    for missing in (tmp_path / "nope.yaml", tmp_path):  # not there, a folder
        assert_one_line_error(*run(faice_cli, ["config", "show", "--config", str(missing)]), missing)


# ---------------------------------------------------------------------------- search spaces

GOOD_SPACE = {
    "name": "fuzz",
    "base": "debug.yaml",
    "scheduler": {"name": "fifo"},
    "searcher": {"name": "random", "seed": 0},
    "budget": {"num_samples": 2, "max_steps": 10},
    "space": {"train.lr": {"loguniform": [1.0e-4, 1.0e-3]}},
}


def _spaced(path: tuple, value) -> str:
    import copy

    tree = copy.deepcopy(GOOD_SPACE)
    node = tree
    for part in path[:-1]:
        node = (
            node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else node[part]
        )
    node[path[-1]] = value
    return yaml.safe_dump(tree)


space_value = st.one_of(st.lists(st.integers(), max_size=3), st.integers(), words, st.booleans())
bad_space = st.one_of(
    # the space itself of the wrong shape
    st.builds(lambda v: _spaced(("space",), v), st.one_of(st.lists(words, min_size=1), st.integers(), words)),
    # a distribution of an unknown kind, of the wrong shape, or on an unknown key
    st.builds(lambda w, v: _spaced(("space", "train.lr"), {w: v}), words, space_value).filter(
        lambda t: not any(k in t for k in ("choice:", "grid:", "uniform:", "loguniform:", "randint:"))
    ),
    st.builds(lambda v: _spaced(("space", "train.lr"), v), st.one_of(st.integers(), words, st.lists(st.integers()))),
    st.builds(lambda w: _spaced(("space", f"train.{w}"), {"choice": [1, 2]}), words),
    st.builds(lambda v: _spaced(("space", "train.lr"), {"loguniform": v}),
              st.one_of(words, st.lists(st.integers(), max_size=1), st.tuples(st.integers(1, 9), st.just(-1)).map(list))),
    st.builds(lambda v: _spaced(("space", "model.name"), {"choice": [v]}), words),
    # scheduler, searcher, budget, name and base gone wrong
    st.builds(lambda w: _spaced(("scheduler", "name"), w), words.filter(lambda w: w not in ("fifo", "asha"))),
    st.builds(lambda w: _spaced(("searcher", "name"), w), words.filter(lambda w: w not in ("random", "grid", "optuna"))),
    st.builds(lambda k, v: _spaced(("budget", k), v), st.sampled_from(["num_samples", "max_steps"]),
              st.one_of(words, st.integers(max_value=0))),
    st.builds(lambda w, v: _spaced((f"{w}z",), v), words, space_value),
    st.builds(lambda v: _spaced(("name",), v), st.sampled_from(["../../escape", "a/b", "..", "/abs"])),
    st.builds(lambda w: _spaced(("base",), f"{w}-missing.yaml"), words),
    st.builds(lambda v: _spaced(("scheduler",), v), st.one_of(st.integers(), words, st.lists(st.integers(), min_size=1))),
    not_yaml,
    not_a_mapping,
    binary,
)  # fmt: skip


def test_a_good_space_passes_the_check(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD_SPACE))
    code, output = run(tune_check, ["--space", str(path)])
    assert code == 0, output  # so the malformed ones below fail for what was broken, not the rest


@pytest.mark.timeout(300)
def test_malformed_search_spaces_are_one_line_errors(tmp_path):
    seen = []
    path = tmp_path / "space.yaml"

    @settings(SETTINGS, max_examples=150)
    @given(bad_space)
    def check(content):
        seen.append(content)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        assert_one_line_error(*run(tune_check, ["--space", str(path)]), content)

    check()
    assert len(seen) >= 150, len(seen)


def test_bad_json_for_resources_per_worker_is_one_line(debug_data):
    from jobs.train import main

    code, output = run(
        main, ["--config", DEBUG, "--resources-per-worker", '{"train_slot": 1', f"data.path={debug_data}"]
    )
    assert_one_line_error(code, output, "--resources-per-worker")
    assert "--resources-per-worker: not valid JSON" in output


def test_a_second_launcher_on_the_same_search_is_refused(tmp_path):
    """The launcher holds <storage>/<search>/.launcher.lock (flock) while it runs: another launcher of the
    same search and storage is refused with a message naming the holder; the lock dies with its process."""
    import tune.search as launcher

    launcher._hold_search_lock(tmp_path / "debug-eval")  # as a running launcher holds it
    try:
        code, output = run(launcher.main,
                           ["--space", "tests/tune/debug-eval.yaml", "--storage", str(tmp_path)])  # fmt: skip
    finally:
        launcher._held_locks.pop().close()
    assert_one_line_error(code, output, "second launcher")
    assert "is being run by pid" in output and "--name" in output
    code, output = run(launcher.main, ["--space", "tests/tune/debug-eval.yaml", "--storage", str(tmp_path),
                                       "--name", "../x"])  # fmt: skip
    assert_one_line_error(code, output, "--name ../x")


def test_autoscaling_needs_a_concurrency():
    """--autoscaling does not count today's slots, so searcher.max_concurrent must say how many trials to run."""
    code, output = run(tune_check, ["--space", "tests/tune/debug-eval.yaml", "--autoscaling"])
    assert_one_line_error(code, output, "--autoscaling")
    assert "searcher.max_concurrent" in output
    code, output = run(
        tune_check, ["--space", "tests/tune/debug-eval.yaml", "--autoscaling", "searcher.max_concurrent=2"]
    )
    assert code == 0, output
