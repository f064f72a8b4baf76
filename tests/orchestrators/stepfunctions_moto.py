"""The exported Step Functions deployment, in memory on moto: state machines, queue, worker.

Not a test module: `tests/orchestrators/test_stepfunctions.py` runs it with
`.venv-stepfunctions/bin/python` (moto and boto3 live there, never in the project's
environment). moto's AWS lives in this one process, so everything a deployment has is here:

- the SQS queue, and both state machines created from the export's ASL with the
  `${StageQueueUrl}` placeholder replaced (as `sed` or DefinitionSubstitutions would), which
  makes moto parse them;
- the export's EventBridge Scheduler schedule, created from `schedule.json` with its
  placeholders replaced (boto3 checks the request against the real API's shapes);
- the export's own `worker.py`, polling the queue in a thread, as it would on EC2 or ECS.

Then it reads commands from stdin, one a line: `lifecycle RUN_ID` or `watch RUN_ID` starts
an execution of that state machine named RUN_ID and waits for it to end (`heartbeat N`
checks the worker's heartbeat, see `heartbeat_check`); the reply is one
stdout line `SUMMARY {json}`: the execution's status, error, cause, output, wall time and
history events. The first line it writes is `READY {json}` with what the schedule stored.
The stages' logs and the worker's go to stderr.

    python stepfunctions_moto.py EXPORT_DIR
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/lifecycle-stepfunctions"
FILES = {"lifecycle": "state_machine.asl.json", "watch": "watch_state_machine.asl.json"}
TIMEOUT_S = 900.0


def load_worker(export: Path) -> Any:
    spec = importlib.util.spec_from_file_location("worker", export / "worker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deploy(export: Path, sfn: Any, queue_url: str) -> dict[str, str]:
    """Both state machines from the export; their ARNs by command name."""
    arns = {}
    for machine, name in FILES.items():
        text = (export / name).read_text(encoding="utf-8")
        definition = text.replace("${StageQueueUrl}", queue_url)
        created = sfn.create_state_machine(
            name=f"lifecycle-{machine}", definition=definition, roleArn=ROLE
        )
        arns[machine] = created["stateMachineArn"]
    return arns


def create_schedule(export: Path, target_arn: str) -> dict[str, Any]:
    text = (export / "schedule.json").read_text(encoding="utf-8")
    text = text.replace("${WatchStateMachineArn}", target_arn)
    text = text.replace("${SchedulerRoleArn}", ROLE)
    scheduler = boto3.client("scheduler", region_name=REGION)
    request = json.loads(text)
    scheduler.create_schedule(**request)
    stored = scheduler.get_schedule(Name=request["Name"])
    kept = ("Name", "ScheduleExpression", "FlexibleTimeWindow", "State")
    return {key: stored[key] for key in kept} | {"TargetArn": stored["Target"]["Arn"]}


def execute(sfn: Any, arn: str, run_id: str, execution_arn: str | None = None) -> dict[str, Any]:
    """One execution named `run_id` (started here unless `execution_arn` says it runs),
    waited for; its summary."""
    started = time.monotonic()
    if execution_arn is None:
        execution_arn = sfn.start_execution(stateMachineArn=arn, name=run_id, input="{}")[
            "executionArn"
        ]
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == (
        "RUNNING"
    ):
        if time.monotonic() - started > TIMEOUT_S:
            raise SystemExit(f"execution {run_id} still running after {TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    output = described.get("output")
    return {
        "run_id": run_id,
        "status": described["status"],
        "error": described.get("error"),
        "cause": described.get("cause"),
        "output": json.loads(output) if output else None,
        "seconds": round(time.monotonic() - started, 3),
        "events": [event_record(event) for event in history],
    }


def heartbeat_check(worker: Any, sfn: Any, sqs: Any, beat_every_s: float) -> dict[str, Any]:
    """The worker's heartbeat against moto's HeartbeatSeconds: a 2 s heartbeat timeout, a
    task that runs 5 s, and a message telling the worker to beat every `beat_every_s` / 5
    seconds (at least 1 s). A scaffold state machine: the exported ones beat every 60 s."""
    queue_url = sqs.create_queue(QueueName=f"heartbeat-{beat_every_s:g}")["QueueUrl"]
    body = {"kind": "stage", "stage": "sleep", "task_token.$": "$$.Task.Token"}
    body["heartbeat_s"] = beat_every_s
    task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken"}
    task |= {"Parameters": {"QueueUrl": queue_url, "MessageBody": body}}
    task |= {"HeartbeatSeconds": 2, "End": True}
    definition = json.dumps({"StartAt": "sleep", "States": {"sleep": task}})
    name = f"heartbeat-{beat_every_s:g}".replace(".", "-")
    arn = sfn.create_state_machine(name=name, definition=definition, roleArn=ROLE)[
        "stateMachineArn"
    ]
    started = sfn.start_execution(stateMachineArn=arn, name=name)["executionArn"]
    messages: list[dict[str, Any]] = []
    while not messages:
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    worker.handle(sfn, json.loads(messages[0]["Body"]), run=lambda _: time.sleep(5) or {})
    return execute(sfn, arn, name, started)


def event_record(event: dict[str, Any]) -> dict[str, Any]:
    details = next((value for key, value in event.items() if key.endswith("EventDetails")), {})
    return {"type": event["type"], "timestamp": event["timestamp"].timestamp(), "details": details}


def reply(kind: str, document: dict[str, Any]) -> None:
    sys.stdout.write(f"{kind} {json.dumps(document, default=str)}\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    export = Path(argv[0])
    logging.basicConfig(level="INFO", format="%(asctime)s worker %(message)s")
    worker = load_worker(export)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sqs = boto3.client("sqs", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="lifecycle-stages")["QueueUrl"]
        arns = deploy(export, sfn, queue_url)
        schedule = create_schedule(export, arns["watch"])
        stop = threading.Event()
        polling = threading.Thread(
            target=worker.serve,
            args=(queue_url,),
            kwargs={"wait_s": 1, "stop": stop, "region": REGION},
            daemon=True,
        )
        polling.start()
        reply("READY", {"schedule": schedule, "state_machines": arns})
        for line in sys.stdin:
            if not line.strip():
                continue
            machine, argument = line.split()
            if machine == "heartbeat":
                summary = heartbeat_check(worker, sfn, sqs, float(argument))
            else:
                summary = execute(sfn, arns[machine], argument)
            logging.info(
                "execution %s: %s in %.1f s", argument, summary["status"], summary["seconds"]
            )
            reply("SUMMARY", summary)
        stop.set()
        polling.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
