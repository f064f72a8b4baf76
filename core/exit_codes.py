"""What a stage's exit code tells the one who started it (an orchestrator, `dvc repro`, a person).

- 0 `SUCCEEDED`: the stage did its work (a deploy gate that refuses the challenger succeeds:
  its decision is the result).
- 75 `TRANSIENT` (EX_TEMPFAIL of sysexits.h): the outside world failed (a source, the
  tracking server, the registry) and the stage's own attempts are used up, or it made just
  one because an orchestrator owns the retries. Worth another attempt later.
- 1 `FAILED`: anything else (bad data, a bug, a refused second run). Retrying will not help.
- 2 `BAD_CONFIG`: params.yaml or the data contract is invalid. Never retried: a person fixes it.

`docs/faults.md` documents these for operators.
"""

from __future__ import annotations

from typing import Final

SUCCEEDED: Final = 0
FAILED: Final = 1
BAD_CONFIG: Final = 2
TRANSIENT: Final = 75

# The error classes (or their bases, by name) that mean "fix the config or the contract".
BAD_CONFIG_ERRORS: Final = ("ConfigError", "ContractError")

# Set by an orchestrator's task (`lifecycle task`): it owns the retries, so a stage makes one
# attempt and leaves with TRANSIENT instead of retrying itself. Attempts never multiply.
RETRY_OWNER_ENV: Final = "LIFECYCLE_RETRY_OWNER"
ORCHESTRATOR: Final = "orchestrator"


def exit_code_for(error: BaseException, transient: frozenset[str] | tuple[str, ...]) -> int:
    """The exit code for a stage that ended with `error`; `transient` names retry.transient."""
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & set(BAD_CONFIG_ERRORS):
        return BAD_CONFIG
    if names & set(transient):
        return TRANSIENT
    return FAILED
