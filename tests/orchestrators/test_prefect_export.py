"""`lifecycle export --to prefect`: the flow module, read as code (Prefect is not imported).

The module is parsed with `ast`: each `@task`'s options, each `.submit(...)`'s upstream
futures and the watch deployment's interval are read from the code itself and compared
with dvc.yaml and params.yaml.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from core.config import load_params
from lifecycle.cli import app
from lifecycle.orchestrators import to_prefect
from lifecycle.orchestrators.export import ExportSettings, header, render
from lifecycle.orchestrators.graph import Pipeline, load_pipeline, pipeline_from
from tests.e2e.conftest import ROOT
from tests.orchestrators.conftest import BIN


def settings(mode: str = "shared") -> ExportSettings:
    return ExportSettings(
        engine="prefect",
        mode=mode,  # type: ignore[arg-type]
        project="/srv/project",
        python="/srv/project/.venv/bin/python",
        repository="git@example.com:team/project.git",
    )


def module(pipeline: Pipeline, mode: str = "shared") -> str:
    return to_prefect.render(pipeline, settings(mode))[to_prefect.FLOW_FILE]


def tasks_of(source: str) -> dict[str, dict[str, object]]:
    """Each `@task(...)`'s keyword options (literals evaluated, calls as source)."""
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "task":
                options = {}
                for keyword in decorator.keywords:
                    try:
                        options[keyword.arg] = ast.literal_eval(keyword.value)
                    except ValueError:
                        options[keyword.arg] = ast.unparse(keyword.value)
                found[str(options["name"])] = {"function": node.name, **options}
    return found


def submits_of(source: str, keyword: str = "wait_for") -> dict[str, list[str]]:
    """In the lifecycle flow: each task's upstream tasks, from `.submit(..., keyword=[...])`."""
    flow = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "lifecycle"
    )
    upstream = {}
    for statement in flow.body:
        value = getattr(statement, "value", None)
        if not (isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "submit"):
            continue
        function = value.func.value.id  # type: ignore[attr-defined]
        names = [
            element.id.removesuffix("_future")
            for kw in value.keywords
            if kw.arg == keyword
            for element in kw.value.elts  # type: ignore[attr-defined]
        ]
        upstream[function] = names
    return upstream


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline(ROOT)


def test_the_module_compiles_and_starts_with_the_header(pipeline: Pipeline) -> None:
    for mode in ("shared", "workers"):
        source = module(pipeline, mode)
        compile(source, to_prefect.FLOW_FILE, "exec")
        assert source.startswith(header("prefect"))
        assert "from lifecycle_tasks import TransientStageFailure, run_stage, run_watch_once" in (
            source
        )


def test_the_export_writes_the_module_beside_the_task_client(pipeline: Pipeline) -> None:
    files = render(pipeline, settings())
    assert set(files) == {"lifecycle_flow.py", "lifecycle_tasks.py"}
    assert "PROJECT = '/srv/project'" in files["lifecycle_tasks.py"]


def test_one_task_per_stage_along_dvc_yaml_s_edges(pipeline: Pipeline) -> None:
    source = module(pipeline)
    tasks = tasks_of(source)
    assert list(tasks) == [stage.name for stage in pipeline.stages]
    upstream = submits_of(source)
    for stage in pipeline.stages:
        assert upstream[stage.name] == list(stage.upstream), stage.name
    # the flow's run id goes to every stage, the ledger and MLflow group by it
    assert "run_id = str(flow_run.id)" in source
    for stage in pipeline.stages:
        assert f'return run_stage("{stage.name}", run_id)' in source


def test_workers_mode_hands_each_task_its_upstream_results(pipeline: Pipeline) -> None:
    source = module(pipeline, "workers")
    upstream = submits_of(source, keyword="upstream")
    for stage in pipeline.stages:
        assert upstream[stage.name] == list(stage.upstream), stage.name
    assert submits_of(source)["deploy"] == []  # no wait_for: the arguments make the edges
    assert (
        'return run_stage("deploy", run_id, [result["dvc_lock"] for result in upstream])' in source
    )
    assert "def ingest(run_id: str) -> dict:" in source  # no upstream, nothing to merge
    assert "git@example.com:team/project.git" in source
    assert "ThreadPoolTaskRunner()" in source
    assert "ThreadPoolTaskRunner(max_workers=1)" in module(pipeline, "shared")


def test_retries_come_from_params_yaml_s_retry_block(tmp_path: Path, monkeypatch) -> None:
    """A retry override in params.yaml, exported by the CLI, shows in that stage's task."""
    for name in ("dvc.yaml", "params.yaml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["retry"]["stages"] = {
        "train": {"attempts": 5, "backoff_initial_s": 2.0, "backoff_max_s": 5.0, "jitter_s": 1.0},
        "deploy": {"attempts": 1},
    }
    raw["monitor"]["watch"]["interval_s"] = 120
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(app, ["export", "--to", "prefect", "--out", "out"])
    assert done.exit_code == 0, done.output
    source = (tmp_path / "out" / to_prefect.FLOW_FILE).read_text()
    tasks = tasks_of(source)
    assert tasks["train"]["retries"] == 4
    assert tasks["train"]["retry_delay_seconds"] == "capped_backoff(2.0, 5.0, retries=4)"
    assert "capped_backoff(2.0, 5.0, retries=4),  # [2, 4, 5, 5] s" in source
    assert tasks["train"]["retry_jitter_factor"] == 0.5  # 1 s of jitter on a first wait of 2 s
    assert tasks["train"]["retry_condition_fn"] == "only_transient"
    assert tasks["deploy"]["retries"] == 0  # attempts 1: never retried
    assert "retry_condition_fn" not in tasks["deploy"]
    assert tasks["ingest"]["retries"] == raw["retry"]["default"]["attempts"] - 1
    assert "interval=120.0,  # monitor.watch.interval_s" in source


def test_every_task_caches_its_result_per_flow_run_and_stage(pipeline: Pipeline) -> None:
    """What lets `prefect flow-run retry` skip the stages that completed."""
    for options in tasks_of(module(pipeline)).values():
        assert options["cache_key_fn"] == "once_per_flow_run"
        assert options["persist_result"] is True
        assert options["result_serializer"] == "json"
    assert 'return f"{context.task_run.flow_run_id}-{context.task.name}"' in module(pipeline)


def test_the_watch_deployment_runs_one_iteration_at_a_time(pipeline: Pipeline) -> None:
    source = module(pipeline)
    assert f"interval={pipeline.watch.interval_s!r},  # monitor.watch.interval_s" in source
    assert "limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW" in source
    assert "return run_watch_once(str(flow_run.id))" in source
    assert f'@flow(name="{pipeline.name}-watch")' in source


def test_the_output_is_deterministic_and_formatted(pipeline: Pipeline, tmp_path: Path) -> None:
    first, second = module(pipeline), module(pipeline)
    assert first == second
    for name, text in render(pipeline, settings()).items():  # the client beside it
        (tmp_path / name).write_text(text)
    path = tmp_path / to_prefect.FLOW_FILE
    assert path.read_text() == first
    ruff = [str(BIN / "ruff"), "--isolated"]
    formatted = subprocess.run(
        [*ruff, "format", "--line-length", "100", "--diff", str(path)],
        cwd=tmp_path,  # lifecycle_tasks beside it is first-party
        capture_output=True,
        text=True,
        check=False,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    checked = subprocess.run(
        [*ruff, "check", "--line-length", "100", "--select", "E,F,W,I,B,UP", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout


def test_stage_names_become_distinct_identifiers() -> None:
    params = load_params(ROOT / "params.yaml")
    dvc_yaml = {
        "stages": {
            "fetch-data": {"cmd": "a", "outs": ["a"]},
            "fetch_data": {"cmd": "b", "deps": ["a"], "outs": ["b"]},
            "import": {"cmd": "c", "deps": ["b"], "outs": ["c"]},
            "watch": {"cmd": "d", "deps": ["c"], "outs": ["d"]},
            "2nd": {"cmd": "e", "deps": ["a", "d"]},
        }
    }
    pipeline = pipeline_from(dvc_yaml, params)
    names = to_prefect.function_names(pipeline)
    assert names == {
        "fetch-data": "fetch_data",
        "fetch_data": "fetch_data_stage",
        "import": "import_stage",
        "watch": "watch_stage",
        "2nd": "stage_2nd",
    }
    source = module(pipeline)
    compile(source, to_prefect.FLOW_FILE, "exec")
    assert submits_of(source)["stage_2nd"] == ["fetch_data", "watch_stage"]
    assert '@task(\n    name="fetch-data",' in source


def test_jitter_maps_to_prefect_s_factor_of_the_first_wait(pipeline: Pipeline) -> None:
    retry = pipeline.stage("train").retry
    assert to_prefect.jitter_factor(retry) == retry.jitter_s / retry.backoff_initial_s
    no_wait = type(retry)(attempts=3, backoff_initial_s=0, backoff_max_s=0, jitter_s=0.5)
    assert to_prefect.jitter_factor(no_wait) is None
    many = type(retry)(attempts=100, backoff_initial_s=1, backoff_max_s=30, jitter_s=0)
    assert len(to_prefect.delays(many)) == 50  # Prefect's limit; it repeats the last wait
    assert to_prefect.delays(many)[-1] == 30


def test_workers_mode_writes_the_run_s_lock_from_each_stage_s_own_task(
    pipeline: Pipeline,
) -> None:
    """`run --dvc-lock`: each stage's entry comes from the lock its own task returned, not
    from a later task's clone, whose committed lock may hold an older entry for it."""
    source = module(pipeline, "workers")
    assert '"--dvc-lock",' in source
    assert "--dvc-lock" not in module(pipeline, "shared")
    function = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.FunctionDef) and node.name == "run_lock"
    )
    namespace: dict = {"yaml": yaml}
    exec(compile(ast.Module([function], []), "run_lock", "exec"), namespace)

    def lock(**stages: str) -> str:
        entries = {name: {"cmd": cmd} for name, cmd in stages.items()}
        return yaml.safe_dump({"schema": "2.0", "stages": entries})

    results = {
        "a": {"dvc_lock": lock(a="new a", b="old b")},
        "b": {"dvc_lock": lock(a="new a", b="new b")},
        "c": {"dvc_lock": lock(a="old a", c="new c")},  # a branch that never saw a's run
        "d": {"dvc_lock": None},  # a stage whose task returned no lock
    }
    written = yaml.safe_load(namespace["run_lock"](results))
    assert written == {
        "schema": "2.0",
        "stages": {"a": {"cmd": "new a"}, "b": {"cmd": "new b"}, "c": {"cmd": "new c"}},
    }
