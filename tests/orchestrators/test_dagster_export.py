"""`lifecycle export --to dagster`, without Dagster: what the generated files say.

The generated `definitions.py` is read back with `ast` (Dagster is not installed in the
project's environment; test_dagster.py runs it for real): its assets, their `deps`, their
`RetryPolicy`, the jobs and the watch schedule, against dvc.yaml and params.yaml.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config.params import parse_params
from core.paths import DVC_FILE
from lifecycle.orchestrators.dagster_mapping import (
    asset_names,
    cron_schedule,
    identifier,
    retry_policy,
)
from lifecycle.orchestrators.export import ExportSettings, render
from lifecycle.orchestrators.graph import Pipeline, Retry, load_pipeline, pipeline_from
from lifecycle.orchestrators.to_dagster import DAGSTER_VERSION, DEFINITIONS, INSTANCE
from tests.e2e.conftest import ROOT

BIN = Path(sys.executable).parent


def settings(mode: str = "shared", project: str = "/srv/project") -> ExportSettings:
    return ExportSettings(
        engine="dagster",
        mode=mode,  # type: ignore[arg-type]
        project=project,
        python="/srv/project/.venv/bin/python",
        repository="https://example.com/project.git",
    )


def raw_params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def pipeline_with(raw: dict[str, Any], dvc_yaml: dict[str, Any] | None = None) -> Pipeline:
    if dvc_yaml is None:
        dvc_yaml = yaml.safe_load((ROOT / DVC_FILE).read_text(encoding="utf-8"))
    return pipeline_from(dvc_yaml, parse_params(raw, "params.yaml"))


def definitions(pipeline: Pipeline, mode: str = "shared") -> str:
    return render(pipeline, settings(mode))[DEFINITIONS]


def assets(source: str) -> dict[str, dict[str, Any]]:
    """Each `@asset` function: its deps, parameters, retry policy and the stage it runs."""
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        decorator = next(
            (d for d in node.decorator_list if isinstance(d, ast.Call) and _name(d) == "asset"),
            None,
        )
        if decorator is None:
            continue
        keywords = {k.arg: k.value for k in decorator.keywords}
        policy = keywords.get("retry_policy")
        call = node.body[-1].value  # return _materialize(context, "stage", ...)
        assert isinstance(call, ast.Call) and _name(call) == "_materialize"
        found[node.name] = {
            "deps": [ast.unparse(d) for d in keywords["deps"].elts] if "deps" in keywords else [],
            "parameters": [a.arg for a in node.args.args],
            "retry": {k.arg: ast.literal_eval(_enum(k.value)) for k in policy.keywords}
            if isinstance(policy, ast.Call)
            else None,
            "stage": ast.literal_eval(call.args[1]),
            "upstream_locks": [ast.unparse(e) for e in call.args[2].elts]
            if len(call.args) > 2
            else None,
        }
    return found


def _name(call: ast.Call) -> str:
    return call.func.id if isinstance(call.func, ast.Name) else ast.unparse(call.func)


def _enum(value: ast.expr) -> ast.expr:
    """`Backoff.EXPONENTIAL` as the string 'Backoff.EXPONENTIAL', for literal_eval."""
    return ast.Constant(ast.unparse(value)) if isinstance(value, ast.Attribute) else value


def assignment(source: str, name: str) -> ast.Call:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == name:
            assert isinstance(node.value, ast.Call)
            return node.value
    raise AssertionError(f"no {name} = ... in the generated file")


def keyword_of(call: ast.Call, name: str) -> str:
    return ast.unparse(next(k.value for k in call.keywords if k.arg == name))


# --- the generated code -------------------------------------------------------------------


def unusual(raw: dict[str, Any]) -> None:
    """Params whose output is longest: capped backoffs, no retries, a many-cron schedule."""
    raw["retry"]["stages"] = {
        "train": {"attempts": 100, "backoff_initial_s": 0.5},
        "evaluate": {"attempts": 6, "backoff_max_s": 5.0, "jitter_s": 0},
        "monitor": {"attempts": 1},
    }
    raw["monitor"]["watch"]["interval_s"] = 90 * 60


@pytest.mark.parametrize("mode", ["shared", "workers"])
@pytest.mark.parametrize("edit", [None, unusual], ids=["default", "unusual"])
def test_generated_definitions_compile_and_pass_ruff(mode: str, edit: Any, tmp_path: Path) -> None:
    raw = raw_params()
    if edit:
        edit(raw)
    source = definitions(pipeline_with(raw), mode)
    compile(source, DEFINITIONS, "exec")
    path = tmp_path / DEFINITIONS
    path.write_text(source, encoding="utf-8")
    config = str(ROOT / "pyproject.toml")
    for check in (["check"], ["format", "--check"]):  # readable: what ruff would write
        done = subprocess.run(
            [str(BIN / "ruff"), *check, "--config", config, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_generated_file_starts_with_the_header() -> None:
    files = render(load_pipeline(ROOT), settings())
    assert set(files) == {DEFINITIONS, INSTANCE, "lifecycle_tasks.py"}
    for text in files.values():
        assert text.startswith("# Generated by `lifecycle export --to dagster`"), text[:80]
        assert "Do not edit" in text.splitlines()[1]


def test_one_asset_per_stage_with_dvc_yaml_edges_as_deps() -> None:
    pipeline = load_pipeline(ROOT)
    found = assets(definitions(pipeline))
    assert [found[name]["stage"] for name in found] == [s.name for s in pipeline.stages]
    edges = {(up, name) for name, asset in found.items() for up in asset["deps"]}
    assert edges == set(pipeline.edges)
    assert found["deploy"]["deps"] == ["train", "evaluate"]  # dvc.yaml: both feed deploy
    assert found["ingest"]["deps"] == []


def test_edges_follow_any_dvc_yaml_not_the_default_stages() -> None:
    dvc_yaml = {
        "stages": {
            "fetch-data": {"cmd": "python fetch.py", "outs": ["raw.csv"]},
            "clean": {"cmd": "python clean.py", "deps": ["raw.csv"], "outs": ["clean.csv"]},
            "stats": {"cmd": "python stats.py", "deps": ["raw.csv"], "outs": ["stats.json"]},
            "report": {"cmd": "python r.py", "deps": ["clean.csv", "stats.json"], "outs": ["r"]},
        }
    }
    pipeline = pipeline_with(raw_params(), dvc_yaml)
    found = assets(definitions(pipeline))
    assert found["fetch_data"]["stage"] == "fetch-data"  # the asset's name is an identifier
    assert found["clean"]["deps"] == found["stats"]["deps"] == ["fetch_data"]
    assert found["report"]["deps"] == ["clean", "stats"]
    workers = assets(definitions(pipeline, "workers"))
    assert workers["report"]["parameters"] == ["context", "clean", "stats"]
    assert workers["report"]["upstream_locks"] == ["clean", "stats"]


def test_workers_mode_passes_upstream_dvc_locks_as_asset_values() -> None:
    source = definitions(load_pipeline(ROOT), "workers")
    found = assets(source)
    assert found["deploy"]["parameters"] == ["context", "train", "evaluate"]
    assert found["deploy"]["upstream_locks"] == ["train", "evaluate"]
    assert found["ingest"]["upstream_locks"] == []
    assert all(asset["deps"] == [] for asset in found.values())  # inputs carry the edges
    assert 'Output(result.get("dvc_lock")' in source
    job = assignment(source, "lifecycle_job")
    assert "executor_def" not in {k.arg for k in job.keywords}  # parallel where it can


def test_shared_mode_runs_steps_in_process_one_run_at_a_time() -> None:
    source = definitions(load_pipeline(ROOT))
    job = assignment(source, "lifecycle_job")
    assert keyword_of(job, "executor_def") == "in_process_executor"
    assert keyword_of(job, "run_tags") == "EXCLUSIVE"
    assert keyword_of(job, "name") == "'milling_failure_lifecycle'"
    assert 'EXCLUSIVE = {"lifecycle/workspace": "milling-failure"}' in source


def test_only_transient_failures_reach_the_retry_policy() -> None:
    source = definitions(load_pipeline(ROOT))
    helper = source[source.index("def _run_stage(") : source.index("def _metadata(")]
    transient = helper.index("except lifecycle_tasks.TransientStageFailure:\n        raise")
    assert transient < helper.index("except Exception as exc:")
    assert "allow_retries=False" in helper
    assert "lifecycle_tasks.run_stage(stage, context.run_id" in helper  # Dagster's run id


def test_the_export_does_not_depend_on_where_the_project_lives() -> None:
    pipeline = load_pipeline(ROOT)
    first = render(pipeline, settings(project="/srv/a"))
    second = render(pipeline, settings(project="/home/b/project"))
    assert first[DEFINITIONS] == second[DEFINITIONS]
    assert first[INSTANCE] == second[INSTANCE]
    assert first == render(pipeline, settings(project="/srv/a"))  # deterministic


# --- retries --------------------------------------------------------------------------------


def test_retry_policies_come_from_params_yaml() -> None:
    found = assets(definitions(load_pipeline(ROOT)))
    default = raw_params()["retry"]["default"]
    for asset in found.values():
        assert asset["retry"] == {
            "max_retries": default["attempts"] - 1,
            "delay": default["backoff_initial_s"],
            "backoff": "Backoff.EXPONENTIAL",
            "jitter": "Jitter.PLUS_MINUS",
        }


def test_a_retry_override_in_params_changes_that_asset_only() -> None:
    raw = raw_params()
    raw["retry"]["stages"] = {
        "train": {"attempts": 5, "backoff_initial_s": 2.0, "backoff_max_s": 60.0},
        "monitor": {"attempts": 1},
        "ingest": {"jitter_s": 0},
    }
    source = definitions(pipeline_with(raw))
    found = assets(source)
    assert found["train"]["retry"]["max_retries"] == 4
    assert found["train"]["retry"]["delay"] == 2.0  # 2**4 * 2 s = 32 s: within 60 s
    assert found["monitor"]["retry"] is None
    assert "retry.attempts 1: never retried" in source
    assert "jitter" not in found["ingest"]["retry"]
    assert found["validate"]["retry"]["max_retries"] == raw["retry"]["default"]["attempts"] - 1


@pytest.mark.parametrize(
    ("attempts", "initial", "cap", "jitter", "exponential"),
    [
        (3, 1.0, 30.0, 0.5, True),  # the default: Dagster's backoff fits under the cap
        (5, 1.0, 10.0, 0.5, True),  # 1, 3, 7, 15 s would pass 10 s: a lower delay
        (10, 1.0, 30.0, 0.0, True),
        (100, 0.5, 30.0, 0.5, False),  # no delay fits 99 doublings: a constant wait
    ],
)
def test_backoff_max_s_bounds_every_dagster_wait(
    attempts: int, initial: float, cap: float, jitter: float, exponential: bool
) -> None:
    retry = Retry(attempts=attempts, backoff_initial_s=initial, backoff_max_s=cap, jitter_s=jitter)
    policy = retry_policy(retry)
    assert policy is not None and policy.max_retries == attempts - 1  # attempts kept exactly
    assert policy.exponential is exponential
    waits = [
        ((2**n - 1) if policy.exponential else 1) * policy.delay  # Dagster's calculate_delay
        for n in range(1, attempts)
    ]
    assert max(waits) + (policy.delay if jitter else 0) <= cap  # PLUS_MINUS: up to +delay
    fits = (2 ** (attempts - 1) - (0 if jitter else 1)) * initial <= cap
    assert (policy.delay == initial) is fits  # changed only when it must be
    assert ("Dagster's backoff has no cap" in policy.note) is not fits
    if not fits:  # the one nearer the project's own total wait (doubling from initial, capped)
        own = sum(min(initial * 2 ** (n - 1), cap) for n in range(1, attempts))
        assert abs(sum(waits) - own) < own


def test_one_attempt_has_no_retry_policy() -> None:
    assert retry_policy(Retry(attempts=1, backoff_initial_s=1, backoff_max_s=1, jitter_s=0)) is None


# --- the watch job --------------------------------------------------------------------------


def ticks(crons: list[str]) -> list[int]:
    """The minutes of a day at which any of these crons fires (the forms cron_schedule writes)."""

    def values(field: str, limit: int) -> set[int]:
        if field == "*":
            return set(range(limit))
        if field.startswith("*/"):
            return set(range(0, limit, int(field[2:])))
        return {int(v) for v in field.split(",")}

    fired = set()
    for cron in crons:
        minute, hour, *_ = cron.split()
        fired |= {h * 60 + m for h in values(hour, 24) for m in values(minute, 60)}
    return sorted(fired)


@pytest.mark.parametrize("minutes", [1, 5, 7, 15, 45, 60, 90, 120, 180, 360, 1440])
def test_cron_schedule_ticks_every_interval(minutes: int) -> None:
    crons, note = cron_schedule(minutes)
    fired = ticks(crons)
    gaps = {b - a for a, b in itertools.pairwise(fired)} | {1440 - fired[-1] + fired[0]}
    if 1440 % minutes == 0:
        assert gaps == {minutes} and note is None, (crons, gaps)
    else:  # 7 min: the nearest interval that divides a day, said in the note
        assert len(gaps) == 1 and note is not None and f"every {gaps.pop()} min" in note


def test_cron_schedule_refuses_no_interval() -> None:
    with pytest.raises(ValueError, match="a schedule needs at least one minute, not 0"):
        cron_schedule(0)


def test_watch_schedule_comes_from_monitor_watch_interval_s() -> None:
    raw = raw_params()
    raw["monitor"]["watch"]["interval_s"] = 900
    raw["monitor"]["policy"]["max_retrains_per_day"] = 2
    source = definitions(pipeline_with(raw))
    schedule = assignment(source, "watch_schedule")
    assert keyword_of(schedule, "cron_schedule") == "'*/15 * * * *'"
    assert keyword_of(schedule, "job") == "watch_job"
    assert keyword_of(schedule, "should_execute") == "_nothing_in_progress"
    assert "lifecycle_tasks.run_watch_once(context.run_id)" in source
    assert "at most 2 retrain(s) a day" in source
    assert "monitor.watch.interval_s 900 s" in source


def test_dagster_yaml_limits_the_exclusive_tag_to_one_run() -> None:
    text = render(load_pipeline(ROOT), settings())[INSTANCE]
    limits = yaml.safe_load(text)["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limits == [
        {"key": "lifecycle/workspace", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]


# --- names ----------------------------------------------------------------------------------


def test_stage_names_become_identifiers_that_shadow_nothing() -> None:
    assert identifier("train-model") == "train_model"
    assert identifier("2nd") == "_2nd"
    assert identifier("import") == "import_"
    dvc_yaml = {
        "stages": {
            "a-b": {"cmd": "x", "outs": ["1"]},
            "a_b": {"cmd": "x", "deps": ["1"], "outs": ["2"]},
            "asset": {"cmd": "x", "deps": ["2"], "outs": ["3"]},
            "str": {"cmd": "x", "deps": ["3"]},
        }
    }
    pipeline = pipeline_with(raw_params(), dvc_yaml)
    assert asset_names(pipeline) == {
        "a-b": "a_b",
        "a_b": "a_b_2",
        "asset": "asset_2",
        "str": "str_2",
    }
    found = assets(definitions(pipeline))
    assert found["a_b_2"]["deps"] == ["a_b"] and found["a_b_2"]["stage"] == "a_b"


# --- the command ----------------------------------------------------------------------------


def test_lifecycle_export_to_dagster_writes_the_files(tmp_path: Path) -> None:
    out = tmp_path / "dagster"
    done = subprocess.run(
        [str(BIN / "lifecycle"), "export", "--to", "dagster", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == [INSTANCE, DEFINITIONS, "lifecycle_tasks.py"]
    assert (out / DEFINITIONS).read_text() == definitions(load_pipeline(ROOT))


def test_lifecycle_export_with_a_bad_params_file_says_why_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("retry: {default: {attempts: 0}}\n")
    (tmp_path / DVC_FILE).write_text((ROOT / DVC_FILE).read_text())
    done = subprocess.run(
        [str(BIN / "lifecycle"), "export", "--to", "dagster"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "retry.default.attempts" in done.stderr, done.stderr
    assert not (tmp_path / "orchestrators").exists()


def test_the_documented_webserver_matches_the_pinned_dagster() -> None:
    pins = (ROOT / "lifecycle/orchestrators/requirements/dagster.txt").read_text()
    assert f"\ndagster=={DAGSTER_VERSION}\n" in pins
    source = definitions(load_pipeline(ROOT))
    assert f"dagster-webserver=={DAGSTER_VERSION}" in source  # `dagster dev` needs it
