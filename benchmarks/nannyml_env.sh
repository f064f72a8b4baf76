#!/usr/bin/env bash
# Build .venv-nannyml: a separate virtual environment holding NannyML, for checking our own
# CBPE (monitoring/estimation.py) against NannyML's. NannyML stays out of the project's venv:
# it brings xgboost, lightgbm, cloud clients and a 200 MB NCCL wheel into every install.
#
# usage: bash benchmarks/nannyml_env.sh [python]   (python: the interpreter to base it on)
# then:  .venv-nannyml/bin/python benchmarks/cbpe_nannyml.py
# It prints the build time and the environment's size.
set -euo pipefail

NANNYML_VERSION="0.13.1"
STATSMODELS_VERSION="0.14.5"
PYTHON="${1:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv-nannyml"

export NML_DISABLE_USAGE_LOGGING=1  # no usage statistics sent out (cbpe_nannyml.py sets it too)

start=$(date +%s)
if [[ ! -x "${VENV}/bin/python" ]]; then
    "${PYTHON}" -m venv "${VENV}"
fi
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# Extra pins, beyond nannyml's own requirements:
# - statsmodels: nannyml 0.13.1 imports it (nannyml/plots/components/joy_plot.py) without
#   declaring it;
# - pandas < 3: left free, pip takes pandas 3, whose pandas.util deprecate_kwarg breaks
#   statsmodels' import; pinned to the project's version, with numpy, scipy and
#   scikit-learn, so both sides fit the same isotonic regression with the same libraries.
PINS=$(grep -E '^(numpy|pandas|scipy|scikit-learn)==' "${ROOT}/requirements.lock")
# shellcheck disable=SC2086
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
    "nannyml==${NANNYML_VERSION}" "statsmodels==${STATSMODELS_VERSION}" ${PINS}
"${VENV}/bin/python" -c "import nannyml; print('nannyml', nannyml.__version__)"
end=$(date +%s)
echo "built ${VENV} in $((end - start)) s; size $(du -sh "${VENV}" | cut -f1)"
