"""`lifecycle export --to stepfunctions`: the lifecycle as AWS Step Functions state machines.

`render` writes what a platform engineer deploys with the AWS CLI or CloudFormation:

- `state_machine.asl.json`: one `Task` state per dvc.yaml stage, in a topological order of
  dvc.yaml's edges (a chain: a stage starts once every stage it depends on has succeeded).
  Each task sends its stage to an SQS queue and waits for the task token
  (`arn:aws:states:::sqs:sendMessage.waitForTaskToken`); the run id is the execution's name
  (`$$.Execution.Name`). The retry block becomes each state's `Retry` on the error
  `TransientStageFailure` only (exit code 75); a `Catch` of `States.ALL` records the failed
  stage and its cause, then ends in `Fail`. In workers mode each stage's result (at
  `$.results.<stage>`) carries `dvc_lock`, handed to the next stages as `upstream_locks`.
- `watch_state_machine.asl.json`: one `lifecycle watch --once` iteration, and
  `schedule.json`, the EventBridge Scheduler schedule (`rate(N minutes)` from
  monitor.watch.interval_s) that starts it.
- `worker.py`: the worker that long-polls the queue, runs `lifecycle_tasks.run_stage`,
  heartbeats while the stage runs and answers `SendTaskSuccess` or
  `SendTaskFailure(error=<exception class name>, cause=<its message>)`.

Why an SQS task token and not an activity (`arn:aws:states:...:activity:...`): both use the
same SendTask* calls, but an activity worker cannot be run anywhere but on AWS: moto 5.2.5,
the interpreter this project tests with, implements no `GetActivityTask` (it raises
NotImplementedError, and its interpreter fails an activity task with States.Runtime).

Placeholders in `${Name}` form (CloudFormation's `DefinitionSubstitutions`) are listed in
`PLACEHOLDERS`; the definitions name them in their `Comment`.

Pure: a function of the `Pipeline` and the `ExportSettings`; the same inputs, the same text.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lifecycle.orchestrators.export import ExportSettings, header
from lifecycle.orchestrators.graph import Pipeline, Retry, Stage
from lifecycle.orchestrators.stage_client import (
    BadConfigFailure,
    PermanentStageFailure,
    TransientStageFailure,
)

STATE_MACHINE_FILE = "state_machine.asl.json"
WATCH_MACHINE_FILE = "watch_state_machine.asl.json"
SCHEDULE_FILE = "schedule.json"
WORKER_FILE = "worker.py"
REQUIREMENTS = "lifecycle/orchestrators/requirements/stepfunctions.txt"
BOTO3 = "boto3==1.44.8"  # what the worker needs on AWS (the pin of REQUIREMENTS)

QUEUE_URL = "${StageQueueUrl}"
WATCH_MACHINE_ARN = "${WatchStateMachineArn}"
SCHEDULER_ROLE_ARN = "${SchedulerRoleArn}"
PLACEHOLDERS = {
    QUEUE_URL: "the SQS queue the tasks are sent to and worker.py polls (both state machines)",
    WATCH_MACHINE_ARN: "the ARN of the watch state machine (schedule.json's target)",
    SCHEDULER_ROLE_ARN: "a role EventBridge Scheduler assumes: states:StartExecution on it",
}

SQS_TASK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
# The error names are the exception classes the worker reports (lifecycle_tasks).
TRANSIENT_ERROR = TransientStageFailure.__name__
PERMANENT_ERRORS = (PermanentStageFailure.__name__, BadConfigFailure.__name__)
BACKOFF_RATE = 2.0  # the retry block's backoff doubles
TASK_TIMEOUT_S = 6 * 3600  # a stage still running after 6 h fails with States.Timeout
HEARTBEAT_S = 300  # the worker beats every HEARTBEAT_S / 5; silence this long: HeartbeatTimeout
FAILED_STATE = "Lifecycle failed"
WATCH_FAILED_STATE = "Watch job failed"
WATCH_STATE = "watch"
DESCRIPTION_LIMIT = 512  # EventBridge Scheduler's limit on a schedule's Description


def render(pipeline: Pipeline, settings: ExportSettings) -> dict[str, str]:
    """The export's files for `pipeline`, by name. Pure."""
    if not pipeline.stages:
        raise ValueError("a pipeline with no stages has nothing to export")
    return {
        STATE_MACHINE_FILE: _json(state_machine(pipeline, settings)),
        WATCH_MACHINE_FILE: _json(watch_state_machine(pipeline)),
        SCHEDULE_FILE: _json(schedule(pipeline)),
        WORKER_FILE: worker_source(pipeline, settings),
    }


def seconds(value: float) -> int:
    """A wait in ASL's unit: whole seconds, at least 1; a fraction rounds up (never shorter
    than the retry block asks)."""
    return max(1, math.ceil(value))


def retrier(retry: Retry) -> dict[str, Any] | None:
    """The `Retry` entry for a stage's retry block; None when it allows one attempt.

    Step Functions waits IntervalSeconds before the first retry, BackoffRate times longer
    before each next one, at most MaxDelaySeconds. Its jitter (`FULL`: the wait drawn
    between 0 and that value) stands in for the retry block's jitter_s (a random 0..jitter_s
    added to each wait), which ASL cannot express."""
    if retry.retries == 0:
        return None
    interval = seconds(retry.backoff_initial_s)
    entry: dict[str, Any] = {
        "ErrorEquals": [TRANSIENT_ERROR],
        "IntervalSeconds": interval,
        "BackoffRate": BACKOFF_RATE,
        "MaxAttempts": retry.retries,
        "MaxDelaySeconds": max(interval, seconds(retry.backoff_max_s)),
    }
    entry["JitterStrategy"] = "FULL" if retry.jitter_s > 0 else "NONE"
    return entry


def state_machine(pipeline: Pipeline, settings: ExportSettings) -> dict[str, Any]:
    """The lifecycle's state machine definition (ASL). Pure."""
    states: dict[str, Any] = {}
    order = list(pipeline.stages)
    for position, stage in enumerate(order):
        following = order[position + 1].name if position + 1 < len(order) else None
        states[stage.name] = _stage_task(stage, settings, following)
        states[_failed(stage.name)] = _record_failure(stage.name, FAILED_STATE)
    states[FAILED_STATE] = {
        "Type": "Fail",
        "Comment": "The execution fails with the stage's error and cause (recorded at $.failed).",
        "ErrorPath": "$.failed.error",
        "CausePath": "$.failed.cause",
    }
    edges = ", ".join(f"{up} -> {down}" for up, down in pipeline.edges) or "none"
    comment = [
        *_header_lines(),
        f"The {pipeline.name} lifecycle: one Task per dvc.yaml stage, run by worker.py "
        f"({settings.mode} mode). dvc.yaml's edges: {edges}.",
        f"The run id is the execution's name. Retry: {TRANSIENT_ERROR} only (exit code "
        f"{pipeline.exit_transient}); {' and '.join(PERMANENT_ERRORS)} (exit codes "
        f"{pipeline.exit_failed} and {pipeline.exit_bad_config}) are caught and fail the "
        "execution.",
        _placeholder_line([QUEUE_URL]),
    ]
    return {"Comment": " ".join(comment), "StartAt": order[0].name, "States": states}


def watch_state_machine(pipeline: Pipeline) -> dict[str, Any]:
    """The watch job's state machine: one `lifecycle watch --once` iteration. Pure."""
    watch = pipeline.watch
    task: dict[str, Any] = {
        "Type": "Task",
        "Comment": (
            "lifecycle watch --once in the project. Its guardrails are the iteration's own: "
            f"one at a time ({watch.lock}), {watch.cooldown_minutes:g} minutes of cooldown "
            f"after a retrain, at most {watch.max_retrains_per_day} retrains a day."
        ),
        "Resource": SQS_TASK,
        "Parameters": {
            "QueueUrl": QUEUE_URL,
            "MessageBody": {
                "kind": "watch",
                "run_id.$": "$$.Execution.Name",
                "task_token.$": "$$.Task.Token",
                "heartbeat_s": HEARTBEAT_S,
            },
        },
        "ResultPath": "$.result",
        "TimeoutSeconds": TASK_TIMEOUT_S,
        "HeartbeatSeconds": HEARTBEAT_S,
        "Catch": [_catch(_failed(WATCH_STATE))],
        "End": True,
    }
    comment = [
        *_header_lines(),
        f"The {pipeline.name} watch job: one lifecycle watch --once iteration, started by "
        f"schedule.json every {_every(watch.interval_minutes)}. Not retried: a failed "
        "iteration waits for the next one.",
        _placeholder_line([QUEUE_URL]),
    ]
    return {
        "Comment": " ".join(comment),
        "StartAt": WATCH_STATE,
        "States": {
            WATCH_STATE: task,
            _failed(WATCH_STATE): _record_failure(WATCH_STATE, WATCH_FAILED_STATE),
            WATCH_FAILED_STATE: {
                "Type": "Fail",
                "ErrorPath": "$.failed.error",
                "CausePath": "$.failed.cause",
            },
        },
    }


def schedule(pipeline: Pipeline) -> dict[str, Any]:
    """The EventBridge Scheduler schedule (`aws scheduler create-schedule --cli-input-json`)
    that starts the watch state machine every monitor.watch.interval_s. Pure."""
    minutes = pipeline.watch.interval_minutes
    description = " ".join(
        [
            *_header_lines(),
            f"Starts the {pipeline.name} watch state machine every {_every(minutes)} "
            f"(monitor.watch.interval_s: {pipeline.watch.interval_s:g} s). "
            f"{_placeholder_line([WATCH_MACHINE_ARN, SCHEDULER_ROLE_ARN], short=True)}",
        ]
    )
    if len(description) > DESCRIPTION_LIMIT:  # a long model name; the schedule still works
        description = description[: DESCRIPTION_LIMIT - 3] + "..."
    return {
        "Name": f"{pipeline.name}-watch",
        "Description": description,
        "ScheduleExpression": schedule_expression(minutes),
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": WATCH_MACHINE_ARN,
            "RoleArn": SCHEDULER_ROLE_ARN,
            "Input": "{}",
            # a start that failed is not tried again: the next tick comes soon enough
            "RetryPolicy": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 60},
        },
        "State": "ENABLED",
    }


def schedule_expression(minutes: int) -> str:
    """EventBridge's rate expression: `rate(1 minute)`, `rate(5 minutes)`."""
    if minutes < 1:
        raise ValueError(f"a schedule needs at least one minute, not {minutes}")
    return f"rate({_every(minutes)})"


def worker_source(pipeline: Pipeline, settings: ExportSettings) -> str:
    """`worker.py`: the queue worker both state machines' tasks wait for. Pure."""
    stages = ", ".join(stage.name for stage in pipeline.stages)
    text = _WORKER.replace("@NAME@", pipeline.name).replace("@STAGES@", stages)
    text = text.replace("@MODE@", settings.mode).replace("@BOTO3@", BOTO3)
    text = text.replace("@REQUIREMENTS@", REQUIREMENTS)
    text = text.replace("@HEARTBEAT_S@", str(HEARTBEAT_S))
    text = text.replace("@TRANSIENT@", TRANSIENT_ERROR)
    text = text.replace("@PERMANENT@", " and ".join(PERMANENT_ERRORS))
    return header("stepfunctions") + text


# --- parts ------------------------------------------------------------------------------


def _stage_task(stage: Stage, settings: ExportSettings, following: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "stage",
        "stage": stage.name,
        "run_id.$": "$$.Execution.Name",
        "attempt.$": "$$.State.RetryCount",
        "task_token.$": "$$.Task.Token",
        "heartbeat_s": HEARTBEAT_S,
    }
    if settings.mode == "workers" and stage.upstream:
        locks = ", ".join(f"$.results.{_path_key(up)}.dvc_lock" for up in stage.upstream)
        body["upstream_locks.$"] = f"States.Array({locks})"
    after = ", ".join(stage.upstream) or "nothing"
    task: dict[str, Any] = {
        "Type": "Task",
        "Comment": f"dvc.yaml stage {stage.name}: {stage.cmd} (after {after}).",
        "Resource": SQS_TASK,
        "Parameters": {"QueueUrl": QUEUE_URL, "MessageBody": body},
        "ResultPath": f"$.results.{_path_key(stage.name)}",
        "TimeoutSeconds": TASK_TIMEOUT_S,
        "HeartbeatSeconds": HEARTBEAT_S,
    }
    retry = retrier(stage.retry)
    if retry is not None:
        task["Retry"] = [retry]
    task["Catch"] = [_catch(_failed(stage.name))]
    if following is None:
        task["End"] = True
    else:
        task["Next"] = following
    return task


def _catch(target: str) -> dict[str, Any]:
    return {"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": target}


def _record_failure(name: str, fail_state: str) -> dict[str, Any]:
    """A Pass state: which stage failed, with what error and cause, at $.failed."""
    return {
        "Type": "Pass",
        "Comment": f"Records that {name} failed, then fails the execution.",
        "Parameters": {
            "stage": name,
            "error.$": "$.failure.Error",
            "cause.$": f"States.Format('stage {_intrinsic(name)} failed: {{}}', $.failure.Cause)",
        },
        "ResultPath": "$.failed",
        "Next": fail_state,
    }


def _failed(name: str) -> str:
    return f"{name} failed"


def _path_key(name: str) -> str:
    """A stage name as a JsonPath member (dvc.yaml names are letters, digits, - and _)."""
    return name if name.replace("_", "").isalnum() else f"['{name}']"


def _intrinsic(text: str) -> str:
    """`text` inside an intrinsic function's quoted string: \\ ' { } escaped."""
    for char in ("\\", "'", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def _every(minutes: int) -> str:
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


def _header_lines() -> list[str]:
    return [line.removeprefix("# ") for line in header("stepfunctions").splitlines()]


def _placeholder_line(names: list[str], short: bool = False) -> str:
    if short:
        return "Replace " + " and ".join(names) + " before deploying."
    return "Placeholders: " + "; ".join(f"{name}: {PLACEHOLDERS[name]}" for name in names) + "."


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


_WORKER = '''r"""The Step Functions worker of the @NAME@ lifecycle.

Stages: @STAGES@ (@MODE@ mode).

Every Task state of state_machine.asl.json and watch_state_machine.asl.json sends one
message to an SQS queue and waits for its task token. This worker long-polls that queue;
for each message it runs the stage with `lifecycle_tasks.run_stage` (`lifecycle task STAGE
--run-id <execution name>` in the project) or the watch iteration, sends a heartbeat while
it runs, and answers SendTaskSuccess with the stage's result, or SendTaskFailure with the
exception's class name as the error and its message as the cause:
@TRANSIENT@ is retried by the state's Retry;
@PERMANENT@ are caught and fail the execution.

Deploy on AWS (names as examples; each ${...} placeholder is in the definitions' Comment):
  1. The queue: aws sqs create-queue --queue-name @NAME@-stages
     (the state machines' role needs sqs:SendMessage on it).
  2. The state machines, with ${StageQueueUrl} replaced by the queue's URL (or passed as
     DefinitionSubstitutions of AWS::StepFunctions::StateMachine):
       aws stepfunctions create-state-machine --name @NAME@ --role-arn ROLE \\
         --definition "$(sed "s|\\${StageQueueUrl}|$QUEUE_URL|" state_machine.asl.json)"
       aws stepfunctions create-state-machine --name @NAME@-watch --role-arn ROLE \\
         --definition "$(sed "s|\\${StageQueueUrl}|$QUEUE_URL|" watch_state_machine.asl.json)"
  3. The workers, on EC2 or ECS, beside the project and its environment (shared mode: one
     machine or volume; workers mode: a clone per task, which needs a DVC remote), with this
     folder and `pip install @BOTO3@`
     (@REQUIREMENTS@ pins it):
       python worker.py --queue-url "$QUEUE_URL"
     Their role: sqs:ReceiveMessage and sqs:DeleteMessage on the queue, and
     states:SendTaskSuccess, states:SendTaskFailure, states:SendTaskHeartbeat. Run one
     worker per execution that may run at once (the lifecycle and the watch job): a message
     that waits in the queue longer than HeartbeatSeconds (@HEARTBEAT_S@) times out.
  4. The schedule, with ${WatchStateMachineArn} and ${SchedulerRoleArn} replaced:
       aws scheduler create-schedule --cli-input-json file://schedule.json
  5. A run: aws stepfunctions start-execution --state-machine-arn ARN --name RUN_ID
     The execution's name is the run id the ledger, MLflow and `lifecycle status` show.
     After a failure, fix the cause and start a new execution: DVC skips every stage whose
     inputs did not change, so only the failed stage and the ones after it run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lifecycle_tasks  # beside this file

logger = logging.getLogger("worker")

QUEUE_ENV = "LIFECYCLE_STAGE_QUEUE_URL"
HEARTBEAT_S = @HEARTBEAT_S@  # the states' HeartbeatSeconds; the worker beats five times as often
MAX_ERROR, MAX_CAUSE = 256, 32768  # SendTaskFailure's limits


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run what one message asks for; its result, or the exception the state sees."""
    if task.get("kind") == "watch":
        return lifecycle_tasks.run_watch_once(task["run_id"])
    return lifecycle_tasks.run_stage(
        task["stage"], task["run_id"], upstream_locks=task.get("upstream_locks") or ()
    )


def handle(sfn: Any, task: dict[str, Any], run: Callable[[dict], dict] = run_task) -> None:
    """Run one task and report how it ended to Step Functions, heartbeating meanwhile."""
    token = task["task_token"]
    what = task.get("stage") or task.get("kind")
    logger.info("%s: started (run %s, retry %s)", what, task.get("run_id"), task.get("attempt", 0))
    done = threading.Event()
    interval = max(1.0, float(task.get("heartbeat_s", HEARTBEAT_S)) / 5)
    beating = threading.Thread(target=_heartbeat, args=(sfn, token, interval, done), daemon=True)
    beating.start()
    try:
        result = run(task)
    except Exception as exc:  # the edge: every failure goes back to the state, named
        done.set()
        beating.join()
        error, cause = type(exc).__name__, str(exc)
        logger.warning("%s: %s: %s", what, error, cause)
        _answer(sfn.send_task_failure, token, error=error[:MAX_ERROR], cause=cause[:MAX_CAUSE])
        return
    done.set()
    beating.join()
    logger.info("%s: %s", what, result.get("outcome", "done"))
    _answer(sfn.send_task_success, token, output=json.dumps(result))


def serve(
    queue_url: str,
    *,
    once: bool = False,
    wait_s: int = 20,
    stop: threading.Event | None = None,
    region: str | None = None,
) -> int:
    """Poll the queue and handle its tasks until `stop` is set (or one task, `once`).

    A message is deleted as soon as it is received: if the worker dies, the state's
    heartbeat timeout fails the task, and Step Functions, not SQS, decides what follows."""
    sqs = boto3.client("sqs", region_name=region)
    sfn = boto3.client("stepfunctions", region_name=region)
    handled = 0
    while stop is None or not stop.is_set():
        reply = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait_s
        )
        for message in reply.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            try:
                task = json.loads(message["Body"])
            except ValueError:
                task = None
            if not isinstance(task, dict) or "task_token" not in task:  # cannot be answered
                logger.error("not a task message, dropped: %.200s", message["Body"])
                continue
            handle(sfn, task)
            handled += 1
        if once and handled:
            break
    return handled


def _answer(send: Callable[..., Any], token: str, **outcome: str) -> None:
    try:
        send(taskToken=token, **outcome)
    except Exception as exc:  # TaskTimedOut, TaskDoesNotExist: the state no longer waits
        logger.error("the answer was refused (the state gave up on this task): %s", exc)


def _heartbeat(sfn: Any, token: str, interval: float, done: threading.Event) -> None:
    while not done.wait(interval):
        try:
            sfn.send_task_heartbeat(taskToken=token)
        except Exception as exc:  # a timed-out task: the stage runs on, its answer is refused
            logger.warning("heartbeat refused: %s", exc)
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.splitlines()[0])
    parser.add_argument("--queue-url", default=os.environ.get(QUEUE_ENV), help=f"[${QUEUE_ENV}]")
    parser.add_argument("--region", default=None, help="[the AWS configuration's]")
    parser.add_argument("--once", action="store_true", help="exit after one task")
    parser.add_argument("--wait-s", type=int, default=20, help="SQS long poll, 1..20 s")
    args = parser.parse_args(argv)
    if not args.queue_url:
        parser.error(f"no queue: pass --queue-url or set {QUEUE_ENV}")
    if not 0 <= args.wait_s <= 20:
        parser.error(f"--wait-s must be 0..20 (SQS's long poll), not {args.wait_s}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        serve(args.queue_url, once=args.once, wait_s=args.wait_s, region=args.region)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
