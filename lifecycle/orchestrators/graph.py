"""`dvc.yaml` and `params.yaml` as one typed `Pipeline`: the stages, their edges, their retries.

Pure: `pipeline_from` takes the parsed `dvc.yaml` and the validated params and returns the
record every engine renderer uses; `load_pipeline` reads the two files. An edge A -> B exists
when one of B's deps is one of A's outs, or lies inside (or contains) one, as DVC links them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from core.config import ConfigError, Params, RetryConfig, load_params, registered_model_name
from core.exit_codes import BAD_CONFIG, FAILED, TRANSIENT
from core.paths import DVC_FILE
from features.contract import ContractError, load_contract

Mode = Literal["shared", "workers"]
ENGINES = ("airflow", "prefect", "dagster", "kubeflow", "stepfunctions")


@dataclass(frozen=True)
class Retry:
    """A stage's retries as an engine needs them: attempts in all (1: never retry), the
    exponential backoff (initial wait, doubling, capped) and the jitter added to each wait."""

    attempts: int
    backoff_initial_s: float
    backoff_max_s: float
    jitter_s: float

    @property
    def retries(self) -> int:
        """Attempts after the first: what most engines call `retries`."""
        return self.attempts - 1

    @classmethod
    def from_config(cls, config: RetryConfig) -> Retry:
        return cls(
            attempts=config.attempts,
            backoff_initial_s=config.backoff_initial_s,
            backoff_max_s=config.backoff_max_s,
            jitter_s=config.jitter_s,
        )


@dataclass(frozen=True)
class Stage:
    """One `dvc.yaml` stage as one orchestrator task."""

    name: str
    upstream: tuple[str, ...]  # the stages whose outs it depends on, in dvc.yaml's order
    retry: Retry
    cmd: str  # what `dvc repro` runs, for the generated file's documentation


@dataclass(frozen=True)
class WatchJob:
    """The second job: one `lifecycle watch --once` iteration on a schedule, its guardrails
    (one at a time, a cooldown after a retrain, a daily budget) kept by the iteration itself."""

    interval_s: float
    lock: str
    cooldown_minutes: float
    max_retrains_per_day: int

    @property
    def interval_minutes(self) -> int:
        """The schedule in whole minutes (cron's unit), at least one."""
        return max(1, round(self.interval_s / 60))


@dataclass(frozen=True)
class Pipeline:
    """What every engine renders: the stages in a topological order, and the watch job."""

    name: str  # the registered model's name: the DAG's, flow's or state machine's
    stages: tuple[Stage, ...]
    watch: WatchJob
    transient_errors: tuple[str, ...]  # retry.transient: the error classes worth a retry
    exit_transient: int = TRANSIENT  # the exit codes of `lifecycle task` (core.exit_codes)
    exit_failed: int = FAILED
    exit_bad_config: int = BAD_CONFIG

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        return tuple((up, stage.name) for stage in self.stages for up in stage.upstream)


def load_pipeline(root: Path = Path()) -> Pipeline:
    """Read `dvc.yaml` and `params.yaml` in `root`; ConfigError when either cannot be used."""
    params = load_params(root / "params.yaml")
    path = root / DVC_FILE
    try:
        dvc_yaml = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (run from the project root)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return pipeline_from(dvc_yaml, params)


def pipeline_from(dvc_yaml: Any, params: Params) -> Pipeline:
    """The `Pipeline` of a parsed `dvc.yaml` and its params. Pure."""
    if not isinstance(dvc_yaml, Mapping) or not isinstance(dvc_yaml.get("stages"), Mapping):
        raise ConfigError("dvc.yaml: no `stages:` mapping")
    raw_params = params.model_dump(mode="json")
    declared: dict[str, tuple[list[str], list[str], str]] = {}
    for name, body in dvc_yaml["stages"].items():
        if isinstance(body, Mapping) and ("foreach" in body or "matrix" in body):
            raise ConfigError(f"dvc.yaml: stage {name!r}: foreach/matrix stages are not exported")
        if not isinstance(body, Mapping) or "cmd" not in body:
            raise ConfigError(f"dvc.yaml: stage {name!r} has no cmd")
        deps = [_resolve(_path_of(dep), raw_params) for dep in body.get("deps") or []]
        outs = [
            _resolve(_path_of(out), raw_params)
            for key in ("outs", "metrics", "plots")
            for out in body.get(key) or []
        ]
        cmd = body["cmd"] if isinstance(body["cmd"], str) else " && ".join(body["cmd"])
        declared[str(name)] = (deps, outs, cmd)
    stages = []
    for name, (deps, _, cmd) in declared.items():
        upstream = tuple(
            other
            for other, (_, outs, _) in declared.items()
            if other != name and any(_linked(dep, out) for dep in deps for out in outs)
        )
        retry = Retry.from_config(params.retry.for_stage(name))
        stages.append(Stage(name=name, upstream=upstream, retry=retry, cmd=cmd))
    policy = params.monitor.policy
    watch = WatchJob(
        interval_s=params.monitor.watch.interval_s,
        lock=str(params.monitor.watch.lock),
        cooldown_minutes=policy.cooldown_minutes,
        max_retrains_per_day=policy.max_retrains_per_day,
    )
    return Pipeline(
        name=_model_name(params),
        stages=_topological(stages),
        watch=watch,
        transient_errors=tuple(params.retry.transient),
    )


def _model_name(params: Params) -> str:
    """The registered model's name (the contract's when deploy.registered_model is null)."""
    try:
        return registered_model_name(
            params.deploy.registered_model, lambda: load_contract(params.data.contract).name
        )
    except ContractError as exc:
        raise ConfigError(str(exc)) from None


def _path_of(entry: Any) -> str:
    return str(next(iter(entry))) if isinstance(entry, Mapping) else str(entry)


def _resolve(template: str, params: Mapping[str, Any]) -> str:
    """`${a.b}` replaced by params' value at a.b, as DVC interpolates dvc.yaml."""
    out, rest = "", template
    while "${" in rest:
        before, _, after = rest.partition("${")
        key, closed, rest = after.partition("}")
        if not closed:
            raise ConfigError(f"dvc.yaml: unclosed ${{ in {template!r}")
        value: Any = params
        for part in key.strip().split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise ConfigError(f"dvc.yaml: ${{{key}}} is not a params.yaml key")
            value = value[part]
        out += before + str(value)
    return out + rest


def _linked(dep: str, out: str) -> bool:
    """True when `dep` is `out`, lies inside it, or contains it."""
    dep_path, out_path = PurePosixPath(dep), PurePosixPath(out)
    return dep_path == out_path or out_path in dep_path.parents or dep_path in out_path.parents


def _topological(stages: Sequence[Stage]) -> tuple[Stage, ...]:
    """The stages ordered so each comes after its upstream ones; dvc.yaml's order breaks ties."""
    done: list[Stage] = []
    left = list(stages)
    while left:
        ready = [s for s in left if all(up in {d.name for d in done} for up in s.upstream)]
        if not ready:
            raise ConfigError(f"dvc.yaml: a cycle among {', '.join(s.name for s in left)}")
        done.append(ready[0])
        left.remove(ready[0])
    return tuple(done)
