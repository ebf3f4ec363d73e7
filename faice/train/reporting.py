"""Reporters: where metrics and sample grids go (console, a JSONL file, Weights & Biases).

Secrets never leave the process: configs pass through `redact` before any reporter sees them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from faice.durable import cut_torn_line, write_json_atomic

_SECRET = re.compile(r"(api[_-]?key|token|secret|password)", re.I)


def redact(tree: Any) -> Any:
    """A copy of a nested dict/list with values under secret-looking keys replaced by '***'."""
    if isinstance(tree, dict):
        return {k: "***" if _SECRET.search(str(k)) else redact(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact(v) for v in tree]
    return tree


class Reporter(Protocol):
    def log_config(self, config: dict) -> None: ...
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None: ...
    def log_image(self, step: int, key: str, image: Image.Image, caption: str = "") -> None: ...
    def close(self) -> None: ...


class ConsoleReporter:
    """Prints metrics through tqdm.write so the progress bar stays intact."""

    def __init__(self, every: int = 1):
        self.every = every

    def log_config(self, config: dict) -> None:
        pass

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        from tqdm.auto import tqdm

        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        tqdm.write(f"step {step}: {text}")

    def log_image(self, step: int, key: str, image: Image.Image, caption: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class JsonlReporter:
    """One JSON object per line: {"step": N, ...metrics}; the source of plots and result tables."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_line(self.path)  # a writer that died mid-line: its half line would glue onto ours
        self._f = self.path.open("a")

    def log_config(self, config: dict) -> None:
        pass

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._f.flush()

    def log_image(self, step: int, key: str, image: Image.Image, caption: str = "") -> None:
        pass

    def close(self) -> None:
        self._f.close()


# The W&B service token wandb.init leaves in os.environ so that child processes share its service (a
# local socket or 127.0.0.1 port). A Ray cluster started from such a process would hand it to every
# worker: they would all log into that one service, on whatever machine, and a restarted worker would
# find its run id still "in use" there. Processes we start for Ray get the environment without it.
WANDB_SERVICE_ENV = "WANDB_SERVICE"


def without_wandb_service(env: dict) -> dict:
    """`env` without the W&B service token of the process that built it."""
    return {k: v for k, v in env.items() if k != WANDB_SERVICE_ENV}


def forget_wandb_service() -> None:
    """Drop an inherited W&B service token: this process starts (and owns) its own W&B service."""
    os.environ.pop(WANDB_SERVICE_ENV, None)


KEY_FILE_ENV = "FAICE_WANDB_KEY_FILE"
"""Names a file holding the W&B API key (mode 600, e.g. on the shared storage): how a key reaches trials
without being on any command line, in a job's runtime_env or in a process's environment."""


def wandb_key() -> tuple[str | None, str]:
    """(the W&B API key, where it came from: "file", "env" or "none"). The file named by
    FAICE_WANDB_KEY_FILE wins over WANDB_API_KEY; a file others can read is refused (ConfigError), and
    so is one that does not hold a key. With neither, W&B may still find a `wandb login` (~/.netrc)."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        from faice.errors import ConfigError

        try:
            st = os.stat(path)
            key = Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"{KEY_FILE_ENV}={path}: cannot read the W&B key file ({e.strerror})") from None
        if st.st_mode & 0o077:
            raise ConfigError(
                f"{KEY_FILE_ENV}={path}: the W&B key file is readable by others (mode {st.st_mode & 0o777:o}); "
                f"chmod 600 {path}"
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{20,}", key):
            raise ConfigError(f"{KEY_FILE_ENV}={path}: the file does not hold a W&B API key (one line)")
        return key, "file"
    key = os.environ.get("WANDB_API_KEY")
    return (key, "env") if key else (None, "none")


def wandb_mode(mode: str) -> str:
    """'auto' -> online with an API key (FAICE_WANDB_KEY_FILE or WANDB_API_KEY), else offline (no network
    needed)."""
    if mode != "auto":
        return mode
    return "online" if wandb_key()[0] else "offline"


WANDB_CLOSED = "wandb/faice-closed.json"  # written when a run is finished cleanly: {"id", "step"}
WANDB_RUN = "wandb/faice-run.json"  # written at start: {"id", "mode", "project", "entity", "group", "url"}


def wandb_closed_step(run_dir: str | Path) -> int | None:
    """The last step of a W&B run that was finished cleanly, None if it never was.

    A run whose process was killed (a trial stopped by ASHA: Ray kills its workers) never finishes, and
    W&B loses what it had buffered; `faice.train.outputs.sync_wandb` replays such runs from local files.
    """
    path = Path(run_dir) / WANDB_CLOSED
    try:
        return int(json.loads(path.read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class WandbReporter:
    """A W&B run with a stable id (resume appends to it); offline runs sync later with `wandb sync`."""

    def __init__(
        self, log_cfg, run_name: str, run_dir: str | Path, config: dict, later_segment: bool = False
    ):
        """`later_segment`: this resumes a run to add to it (late evaluations, a replay), so W&B does not
        record the installed packages again (~0.3 CPU-s per run, which the run's first segment spent)."""
        import wandb

        self._wandb, self.run_dir, self.last_step = wandb, Path(run_dir), 0
        key, key_source = wandb_key()
        mode = wandb_mode(log_cfg.wandb)
        # a key from the file goes to W&B's service over its socket: never into os.environ, argv or a file
        extra = {"api_key": key} if key_source == "file" else {}
        if later_segment and "x_save_requirements" in getattr(wandb.Settings, "model_fields", {}):
            extra["x_save_requirements"] = False
        self.run = wandb.init(
            mode=mode,
            project=log_cfg.project or os.environ.get("WANDB_PROJECT", "faice"),
            entity=log_cfg.entity or os.environ.get("WANDB_ENTITY"),
            group=log_cfg.group,
            tags=log_cfg.tags or None,
            name=run_name,
            id=re.sub(r"[^A-Za-z0-9_-]", "-", run_name)[:120],
            resume="allow",
            dir=str(run_dir),
            config=redact(config),
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, **extra),
        )
        url = None if mode != "online" else getattr(self.run, "url", None)  # where `faice report` links to
        record = {"id": self.run.id, "mode": mode, "key": key_source, "project": self.run.project, "group": log_cfg.group,
                  "entity": getattr(self.run, "entity", None) if mode == "online" else None, "url": url}  # fmt: skip
        marker = self.run_dir / WANDB_RUN
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, record)

    def log_config(self, config: dict) -> None:
        self.run.config.update(redact(config), allow_val_change=True)

    @property
    def next_step(self) -> int:
        """The first step this run can still log (a resumed online run continues after its last step)."""
        return int(getattr(self.run, "step", 0) or 0)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.last_step = max(self.last_step, step)
        self.run.log(metrics, step=step)

    def log_image(self, step: int, key: str, image: Image.Image, caption: str = "") -> None:
        self.last_step = max(self.last_step, step)
        self.run.log({key: self._wandb.Image(image, caption=caption)}, step=step)

    def close(self) -> None:
        # finish() only tells the W&B service the run is over: the service writes the rest of the run
        # file afterwards, on its own. The run is complete on disk (before the closed marker says so, and
        # before Ray may kill this process and the service with it) once the file holds the run's exit
        # record. The service itself is kept: the next run of this process (a reused Tune trial actor)
        # uses it, and W&B ends it at exit. teardown() per run is only the fallback: in a reused Ray
        # actor its wait for the service process was seen to spin forever (wandb 0.31, Ray 2.60).
        self.run.finish()
        sync_file = getattr(getattr(self.run, "settings", None), "sync_file", None)
        if not (sync_file and wait_for_exit_record(Path(sync_file))):
            self._wandb.teardown()
        marker = self.run_dir / WANDB_CLOSED
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, {"id": self.run.id, "step": self.last_step})


# a W&B run file: a 7-byte header, then LevelDB-log records in 32 KiB blocks
WANDB_BLOCK = 32768
WANDB_HEADER = 7


def wandb_record_types(path: Path) -> list[str]:
    """The record types of a W&B run file (.wandb) in order, e.g. [..., "history", "exit"]; a record cut
    off by the end of the file ends the list with "torn". (The file is a LevelDB log: in each 32 KiB block,
    records of a 7-byte header, crc32 + length + type (1 full, 2 first, 3 middle, 4 last), and a chunk of a
    serialized `Record` protobuf.)"""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    pos, kinds, chunks = WANDB_HEADER, [], []
    while pos + 7 <= len(data):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        _, length, kind = struct.unpack_from("<IHB", data, pos) if left >= 7 else (0, 0, 0)
        if left < 7 or (length == 0 and kind == 0):  # the rest of the block is padding
            pos += left
            continue
        if pos + 7 + length > len(data):
            return [*kinds, "torn"]
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            kinds.append(record.WhichOneof("record_type") or "?")
            chunks = []
    return kinds


def wait_for_exit_record(path: Path, timeout_s: float = 60.0) -> bool:
    """Whether the W&B run file at `path` holds its exit record within `timeout_s` (polled). False at once
    for a file this reader cannot parse (another W&B file format): the caller then falls back."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if "exit" in wandb_record_types(path):
                return True
        except FileNotFoundError:  # not created yet
            pass
        except Exception:  # a record that does not parse: a format this reader does not know
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class MultiReporter:
    """Fans every call out to several reporters."""

    def __init__(self, reporters: list):
        self.reporters = reporters

    def log_config(self, config: dict) -> None:
        for r in self.reporters:
            r.log_config(config)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for r in self.reporters:
            r.log_metrics(step, metrics)

    def log_image(self, step: int, key: str, image: Image.Image, caption: str = "") -> None:
        for r in self.reporters:
            r.log_image(step, key, image, caption)

    def close(self) -> None:
        for r in self.reporters:
            r.close()


def default_reporter(cfg, run_dir: str | Path, config: dict) -> MultiReporter:
    """JSONL always, W&B unless disabled, console lines when the progress bar is off."""
    reporters: list = [JsonlReporter(Path(run_dir) / "metrics.jsonl")]
    if cfg.log.wandb != "disabled":
        reporters.append(WandbReporter(cfg.log, cfg.run_name, run_dir, config))
    if not cfg.log.progress:
        reporters.append(ConsoleReporter())
    return MultiReporter(reporters)
