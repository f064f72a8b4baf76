"""The lifecycle under a workflow orchestrator: `lifecycle export --to ENGINE` and `lifecycle task`.

`dvc.yaml` stays the one definition of the graph. `graph` reads it (and params.yaml's retry,
watch and policy blocks) into a typed `Pipeline`; one module per engine renders that into the
engine's own idiom (`airflow`, `prefect`, `dagster`, `kubeflow`, `stepfunctions`); every
generated task calls `lifecycle task STAGE` in the project's environment through the small
stdlib-only client `stage_client` (copied beside the generated files), so DVC keeps its
content-hash skipping and the stage keeps its ledger, MLflow runs and exit codes.
`commands` holds the two commands themselves (registered in `lifecycle.cli`).
"""
