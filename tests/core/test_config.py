"""params.yaml parses into frozen typed models; bad keys and values fail with the key's name."""

from __future__ import annotations

import copy
from pathlib import Path

import pydantic
import pytest
import yaml

from core.config import ConfigError, Params, load_params, parse_params, registered_model_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_project_params_parse(raw: dict) -> None:
    params = parse_params(raw)
    assert params.ingest.source == "synthetic"
    assert params.validate_.label_rate[0] < params.validate_.label_rate[1]
    assert params.data.contract == Path("features/contracts/milling.yaml")


def test_params_are_frozen(raw: dict) -> None:
    params = parse_params(raw)
    with pytest.raises(pydantic.ValidationError):
        params.train.holdout_size = 0.5  # type: ignore[misc]


def _missing_keys(model: type[pydantic.BaseModel], raw: dict, prefix: str = "") -> list[str]:
    missing = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in raw:
            missing.append(prefix + key)
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            missing += _missing_keys(annotation, raw[key] or {}, f"{prefix}{key}.")
    return missing


def test_every_key_is_spelled_out_in_params_yaml(raw: dict) -> None:
    """params.yaml documents every setting: no key lives only as a default in code."""
    assert _missing_keys(Params, raw) == []


def test_unknown_nested_key_names_the_key_and_a_close_match(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["ingest"]["synthetic"]["rowz"] = 10
    with pytest.raises(ConfigError) as info:
        parse_params(bad)
    assert "ingest.synthetic.rowz: unknown key (did you mean 'rows'?)" in str(info.value)


def test_unknown_top_level_block(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["trian"] = {}
    with pytest.raises(ConfigError, match=r"trian: unknown key \(did you mean 'train'\?\)"):
        parse_params(bad)


def test_wrong_type_names_key_and_value(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["train"]["holdout_size"] = "lots"
    with pytest.raises(ConfigError) as info:
        parse_params(bad)
    assert "train.holdout_size" in str(info.value)
    assert "'lots'" in str(info.value)


def test_unknown_source_lists_the_choices(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["ingest"]["source"] = "ftp"
    with pytest.raises(ConfigError, match=r"ingest.source: Input should be 'synthetic', 'file'"):
        parse_params(bad)


def test_chosen_source_must_be_complete(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["ingest"]["source"] = "sql"
    bad["ingest"]["sql"]["url"] = "sqlite:///x.db"
    with pytest.raises(ConfigError, match=r"source 'sql' needs ingest.sql.query to be set"):
        parse_params(bad)


def test_inverted_ranges_fail(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["validate"]["label_rate"] = [0.5, 0.1]
    with pytest.raises(ConfigError, match="label_rate"):
        parse_params(bad)


@pytest.mark.parametrize(
    ("block", "key"),
    [(("deploy",), "deploy.thresholds"), (("monitor", "quality"), "monitor.quality.thresholds")],
)
def test_metric_floors_outside_0_1_are_named(raw: dict, block: tuple[str, ...], key: str) -> None:
    bad = copy.deepcopy(raw)
    target = bad
    for part in block:
        target = target.setdefault(part, {})
    target["thresholds"] = {"roc_auc": 1.5, "average_precision": 0.5}
    with pytest.raises(ConfigError, match=rf"{key} \['roc_auc'\] must lie between 0 and 1"):
        parse_params(bad)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_params(["a", "list"])


def test_load_params_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_params(tmp_path / "params.yaml")


def test_load_params_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("ingest: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


# --- retry ------------------------------------------------------------------------------


def test_retry_overrides_a_stage_and_keeps_the_rest_of_the_default(raw: dict) -> None:
    changed = copy.deepcopy(raw)
    changed["retry"]["stages"] = {"train": {"attempts": 5}}
    retry = parse_params(changed).retry
    assert retry.for_stage("train").attempts == 5
    assert retry.for_stage("train").backoff_initial_s == retry.default.backoff_initial_s == 1.0
    assert retry.for_stage("ingest") == retry.default


def test_retry_refuses_an_unknown_stage_and_lists_the_known_ones(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["retry"]["stages"] = {"trian": {"attempts": 5}}
    with pytest.raises(ConfigError) as info:
        parse_params(bad)
    assert str(info.value) == (
        "params.yaml: 1 problem(s)\n"
        "  - retry: Value error, retry.stages: unknown stage(s) ['trian']; "
        "known: ingest, validate, train, evaluate, deploy, monitor"
    )


def test_retry_refuses_an_error_class_that_is_not_transient(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["retry"]["transient"] = ["TrackingUnavailableError", "DataValidationError"]
    with pytest.raises(ConfigError) as info:
        parse_params(bad)
    assert str(info.value) == (
        "params.yaml: 1 problem(s)\n"
        "  - retry.transient.1: Input should be 'TransientSourceError', "
        "'RegistryUnavailableError', 'TrackingUnavailableError', 'ConnectionError' or "
        "'TimeoutError' (got 'DataValidationError')"
    )


def test_retry_override_is_checked_against_the_default(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad["retry"]["stages"] = {"deploy": {"backoff_initial_s": 60}}  # above backoff_max_s 30
    with pytest.raises(ConfigError, match=r"retry.stages.deploy: backoff_initial_s must not"):
        parse_params(bad)


def test_retry_names_real_error_classes_and_the_real_stages() -> None:
    """Every name `retry.transient` accepts is an exception class we raise (or a built-in),
    and the stages it knows are dvc.yaml's."""
    import builtins
    import typing

    from core.config import STAGES, TransientErrorName
    from pipelines.edges.registry import RegistryUnavailableError
    from pipelines.edges.sources import TransientSourceError
    from pipelines.edges.tracking import TrackingUnavailableError

    ours = {
        cls.__name__: cls
        for cls in (TransientSourceError, RegistryUnavailableError, TrackingUnavailableError)
    }
    for name in typing.get_args(TransientErrorName):
        cls = ours.get(name) or getattr(builtins, name)
        assert issubclass(cls, Exception), name
    dvc_stages = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    assert list(STAGES) == dvc_stages


def test_estimation_settings_are_checked_with_their_key(raw: dict) -> None:
    bad = copy.deepcopy(raw)
    bad.setdefault("monitor", {}).setdefault("estimation", {})["confidence"] = 1.0
    with pytest.raises(ConfigError, match=r"monitor\.estimation\.confidence"):
        parse_params(bad)


# --- the registered model's name --------------------------------------------------------


def test_the_default_project_names_its_model_by_configuration(raw: dict) -> None:
    assert registered_model_name(parse_params(raw).deploy.registered_model, "milling") == (
        "milling-failure"
    )


@pytest.mark.parametrize(
    ("contract", "expected"),
    [("breast-cancer", "breast-cancer"), ("Breast Cancer (WDBC)", "breast-cancer-wdbc")],
)
def test_an_unset_registered_model_is_the_contracts_name(
    raw: dict, contract: str, expected: str
) -> None:
    raw["deploy"]["registered_model"] = None
    configured = parse_params(raw).deploy.registered_model
    assert configured is None
    assert registered_model_name(configured, contract) == expected
    assert registered_model_name(configured, lambda: contract) == expected


def test_a_set_name_never_loads_the_contract(raw: dict) -> None:
    def no_contract() -> str:
        raise AssertionError("the contract was loaded")

    configured = parse_params(raw).deploy.registered_model
    assert registered_model_name(configured, no_contract) == "milling-failure"


@pytest.mark.parametrize(
    ("contract", "problem"),
    [("±±", "it holds no ASCII letter or digit"), ("x" * 64, "longer than 63 characters")],
)
def test_a_contract_name_that_cannot_name_a_model_says_so(
    raw: dict, contract: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        registered_model_name(None, contract)
    assert "set deploy.registered_model in params.yaml" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_registered_model_bentoml_cannot_take_names_the_key(raw: dict) -> None:
    raw["deploy"]["registered_model"] = "Milling Failure"
    with pytest.raises(ConfigError, match=r"deploy.registered_model: .*cannot name a registered"):
        parse_params(raw)
