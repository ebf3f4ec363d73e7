"""Every command the READMEs show still works as written: each `python -m tune.search`, `python -m jobs.train`,
`python -m jobs.sample` and `faice ...` line of a fenced block (also after `ray job submit ... --`) is parsed
by that entrypoint's own parser, and what it names (search spaces with their overrides and profile, configs
with their overrides) loads. Nothing runs: the commands themselves are run by the other tests and the demo."""

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "tune/README.md", "jobs/README.md", "cluster/README.md"]
ENTRYPOINTS = ("tune.search", "jobs.train", "jobs.sample", "faice")


def doc_commands(text: str) -> list[list[str]]:
    """The entrypoint commands of a markdown text's fenced blocks, as argv lists starting at the entrypoint
    ("tune.search", "jobs.train", "jobs.sample" or "faice")."""
    out = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" # ")[0].strip()
            if not line or line.startswith("#"):
                continue
            try:
                argv = shlex.split(line)
            except ValueError:
                continue
            if "--" in argv and argv[:3] == ["ray", "job", "submit"] or argv[1:4] == ["ray", "job", "submit"]:
                argv = argv[argv.index("--") + 1 :]  # what the job runs
            for i, word in enumerate(argv):
                if word == "-m" and i + 1 < len(argv) and argv[i + 1] in ENTRYPOINTS:
                    out.append(argv[i + 1 :])
                    break
                if Path(word).name == "faice" and i == 0:
                    out.append(["faice", *argv[1:]])
                    break
    return out


def test_the_command_finder_reads_blocks_continuations_and_submitted_jobs():
    text = (
        "```bash\nmake demo\n.venv/bin/python -m tune.search --space a.yaml \\\n  --resume  # again\n"
        "ray job submit --working-dir . -- python -m jobs.train --config x.yaml\n.venv/bin/faice results r\n```\n"
        "not a block: python -m tune.search --space b.yaml\n"
    )
    assert doc_commands(text) == [
        ["tune.search", "--space", "a.yaml", "--resume"],
        ["jobs.train", "--config", "x.yaml"],
        ["faice", "results", "r"],
    ]


def _check(argv: list[str]) -> None:
    """Parse `argv` with its entrypoint's parser and load what it names (no Ray, nothing trained)."""
    entry, args = argv[0], argv[1:]
    if entry == "tune.search":
        from tune.search import parse_args
        from tune.space import load_space

        ns = parse_args(args)
        overrides = [f"scale={ns.scale}", *ns.overrides] if ns.scale else ns.overrides
        load_space(ns.space, overrides, profile=ns.profile)
    elif entry == "jobs.train":
        from faice.tasks import load_checked
        from jobs.train import parse_args

        ns = parse_args(args)
        load_checked(ns.config, ns.overrides)
    else:  # jobs.sample takes `faice sample`'s arguments
        from faice.cli import build_parser

        build_parser().parse_args(["sample", *args] if entry == "jobs.sample" else args)


COMMANDS = [(doc, argv) for doc in DOCS for argv in doc_commands((REPO / doc).read_text())]


def test_the_docs_show_commands_of_every_entrypoint():
    assert {argv[0] for _, argv in COMMANDS} == set(ENTRYPOINTS)


@pytest.mark.parametrize(("doc", "argv"), COMMANDS, ids=[f"{d}:{' '.join(a)[:60]}" for d, a in COMMANDS])
def test_every_documented_command_parses_and_what_it_names_loads(doc, argv, monkeypatch):
    monkeypatch.chdir(REPO)
    _check(argv)
