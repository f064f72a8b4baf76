"""The lifecycle under Kubeflow Pipelines for real: the compiled YAML run with kfp.local.

`lifecycle export --to kubeflow` in one project copy compiles the pipeline with kfp 2.17
(.venv-kubeflow); the generated module's `--run` then runs the compiled YAML with
`kfp.local.SubprocessRunner`: each task a subprocess of kfp's Python, calling the real stages
through `lifecycle task`. There is no KFP cluster and no container engine here: what a cluster
adds (pods, the image, Argo, the UI's retry of a failed run) is not tested.

To keep CI time, the copy uses `tests.faults.conftest.fast_lifecycle` (5,000 synthetic rows, a
smaller model, fewer bootstrap resamples, a generous latency budget for the infra check): the
six stages, MLflow and the BentoML store are the real ones.

In order, in one copy: (a) the whole lifecycle, every stage in the one KFP run, the champion
out; (b) the same pipeline again: DVC skips every stage, no stage attempt; (c) evaluate made
to fail permanently (a bad value under `evaluate:`): one attempt and no retry, the tasks after
it not run; fixed (another valid value), a new KFP run re-runs evaluate and what its new
results change, never the stages before it. kfp.local has no re-run of a failed run: on a
cluster KFP's retry of the run would re-run the failed task, DVC skipping the rest alike.
(d) The watch pipeline once: one `lifecycle watch --once` iteration, logged.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from core.records.ledger import AttemptFinished, read_ledger
from tests.e2e.conftest import ProjectCopy, copy_project
from tests.faults.conftest import fast_lifecycle
from tests.orchestrators.conftest import engine_env, engine_python, export

pytestmark = pytest.mark.slow

STAGES = ["ingest", "validate", "train", "evaluate", "deploy", "monitor"]
RUN_TIMEOUT_S = 600


class Run:
    """One kfp.local run of the compiled lifecycle: its exit code, its output, and the result
    each task printed (`lifecycle_tasks`: stage, outcome, KFP's run id)."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.returncode = done.returncode
        self.output = done.stdout + done.stderr
        self.results = [_result(line) for line in self.output.splitlines()]
        self.results = [result for result in self.results if result is not None]
        ids = {result["run_id"] for result in self.results}
        assert len(ids) <= 1, f"the tasks of one run had several run ids: {ids}"
        self.run_id = ids.pop() if ids else None

    def outcomes(self) -> dict[str, str]:
        return {result["stage"]: result["outcome"] for result in self.results}


def _result(line: str) -> dict | None:
    text = line.strip()
    if not (text.startswith("{") and '"outcome"' in text):
        return None
    return json.loads(text)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> ProjectCopy:
    copy = copy_project(tmp_path_factory.mktemp("kubeflow") / "project")
    copy.edit_params(fast_lifecycle)
    return copy


@pytest.fixture(scope="module")
def pipeline_module(copy: ProjectCopy) -> Path:
    python = engine_python("kubeflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIFECYCLE_KUBEFLOW_PYTHON", str(python))
        out = export(copy, "kubeflow")
    assert (out / "lifecycle_pipeline.yaml").is_file(), "export did not compile the pipeline"
    return out / "lifecycle_pipeline.py"


def run_pipeline(copy: ProjectCopy, module: Path, which: str) -> subprocess.CompletedProcess[str]:
    """`lifecycle_pipeline.py --run WHICH`: the compiled YAML run with kfp.local."""
    return subprocess.run(
        [str(engine_python("kubeflow")), str(module), "--run", which],
        cwd=module.parent,
        env=engine_env(copy),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def run_lifecycle(copy: ProjectCopy, module: Path) -> Run:
    return Run(run_pipeline(copy, module, "lifecycle"))


def attempts(copy: ProjectCopy, run_id: str | None) -> list[AttemptFinished]:
    ledger = copy.path / ".lifecycle" / "ledger.jsonl"
    if not ledger.exists():
        return []
    return [
        entry
        for entry in read_ledger(ledger)
        if isinstance(entry, AttemptFinished) and entry.lifecycle_run == run_id
    ]


def test_the_whole_lifecycle_runs_in_one_kfp_run(copy: ProjectCopy, pipeline_module: Path) -> None:
    run = run_lifecycle(copy, pipeline_module)
    assert run.returncode == 0, run.output[-3000:]
    assert run.run_id is not None, run.output[-3000:]
    finished = attempts(copy, run.run_id)
    assert [(a.stage, a.status, a.attempt) for a in finished] == [
        (stage, "succeeded", 1) for stage in STAGES
    ]
    assert run.outcomes() == dict.fromkeys(STAGES, "ran")
    assert (copy.path / "reports/deploy/champion.json").is_file()


def test_a_second_run_skips_every_stage(copy: ProjectCopy, pipeline_module: Path) -> None:
    run = run_lifecycle(copy, pipeline_module)
    assert run.returncode == 0, run.output[-3000:]
    assert run.outcomes() == dict.fromkeys(STAGES, "skipped")
    assert attempts(copy, run.run_id) == []  # DVC skipped them: no stage started


def test_a_permanent_failure_is_not_retried_and_a_new_run_resumes(
    copy: ProjectCopy, pipeline_module: Path
) -> None:
    copy.edit_params(lambda raw: raw["evaluate"]["operating_point"].update(goal="accuracy"))
    failed = run_lifecycle(copy, pipeline_module)
    assert failed.returncode != 0
    skipped = dict.fromkeys(["ingest", "validate", "train"], "skipped")
    assert failed.outcomes() == {**skipped, "evaluate": "failed"}  # deploy, monitor: not run
    [attempt] = attempts(copy, failed.run_id)  # one attempt: neither KFP nor the stage retried
    assert (attempt.stage, attempt.status, attempt.max_attempts) == ("evaluate", "failed", 3)
    assert attempt.error is not None and attempt.error.error_class == "ConfigError"
    assert "stage evaluate failed with exit code 2 (ConfigError)" in failed.output

    # fixed with another valid value: evaluate's params changed, so it re-runs
    copy.edit_params(
        lambda raw: raw["evaluate"]["operating_point"].update(goal="recall", at_least=0.85)
    )
    resumed = run_lifecycle(copy, pipeline_module)
    assert resumed.returncode == 0, resumed.output[-3000:]
    ran = [a.stage for a in attempts(copy, resumed.run_id)]
    assert ran[0] == "evaluate" and set(ran) <= {"evaluate", "deploy", "monitor"}, ran
    assert all(a.status == "succeeded" for a in attempts(copy, resumed.run_id))
    outcomes = resumed.outcomes()
    assert set(outcomes) == set(STAGES)
    assert [stage for stage, outcome in outcomes.items() if outcome == "ran"] == ran
    assert (copy.path / "reports/deploy/champion.json").is_file()


def test_the_watch_pipeline_runs_one_iteration(copy: ProjectCopy, pipeline_module: Path) -> None:
    log = copy.path / "reports/watch/iterations.jsonl"
    before = log.read_text().splitlines() if log.exists() else []
    done = run_pipeline(copy, pipeline_module, "watch")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    [iteration] = [json.loads(line) for line in log.read_text().splitlines()[len(before) :]]
    assert iteration["error"] is None
    assert iteration["action"] == "none"  # no traffic yet: nothing to judge, no retrain
