"""The edges to the outside world, used by the stages and the `lifecycle` command.

MLflow tracking and the model registry, the stage ledger, the data sources, feedback
batches and the stage runtime (logging, retries, the ledger, clean failure). The edges may
import the library and `core`, never a stage or the command.
"""
