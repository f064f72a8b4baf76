"""`python -m lifecycle`: the `lifecycle` command, as an orchestrator's task runs it."""

from lifecycle.cli import app

app(prog_name="lifecycle")
