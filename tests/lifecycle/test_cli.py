"""The `lifecycle` command line: drafting a contract, and what a user sees on bad arguments."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import load_contract
from lifecycle.cli import app

runner = CliRunner()


def _write_sample(path: Path) -> Path:
    pd.DataFrame({"id": [1, 2, 3, 4], "x": [0.5, 1.5, 2.0, 3.0], "y": [0, 1, 0, 1]}).to_csv(
        path, index=False
    )
    return path


def test_draft_contract_writes_a_loadable_contract(tmp_path: Path) -> None:
    sample = _write_sample(tmp_path / "sample.csv")
    out = tmp_path / "contract.yaml"
    result = runner.invoke(app, ["draft-contract", str(sample), "--label", "y", "--out", str(out)])
    assert result.exit_code == 0, result.output
    contract = load_contract(out)
    assert contract.label == "y" and contract.features == ["x"] and contract.ids == ["id"]


def test_draft_contract_names_the_contract_and_its_file_after_the_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    monkeypatch.chdir(tmp_path)
    rows = 30
    frame = pd.DataFrame(
        {"case_no": range(1, rows + 1), "x": [i / 7 for i in range(rows)], "y": [0, 1] * 15}
    )
    frame.to_csv(tmp_path / "WDBC Data.csv", index=False)
    result = runner.invoke(app, ["draft-contract", "WDBC Data.csv", "--label", "y"])
    assert result.exit_code == 0, result.output
    contract = load_contract(tmp_path / "features/contracts/wdbc-data.yaml")
    assert contract.name == "wdbc-data" and contract.row_id == "case_no"
    assert "contract 'wdbc-data'" in caplog.text
    assert "case_no: id (unique): its 30 distinct whole numbers fill 1..30" in caplog.text
    assert "my-data" not in caplog.text

    result = runner.invoke(
        app, ["draft-contract", "WDBC Data.csv", "--label", "y", "--name", "wdbc"]
    )
    assert result.exit_code == 0, result.output
    assert load_contract(tmp_path / "features/contracts/wdbc.yaml").name == "wdbc"


def test_draft_contract_without_an_id_says_labels_cannot_be_joined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"x": [0.5, 1.5, 2.0, 3.0], "y": [0, 1, 0, 1]}).to_csv("s.csv", index=False)
    result = runner.invoke(app, ["draft-contract", "s.csv", "--label", "y"])
    assert result.exit_code == 0, result.output
    assert "no unique id column: the monitor judges drift and estimated quality" in caplog.text


def test_draft_contract_needs_a_name_it_can_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _write_sample(tmp_path / "___.csv")
    result = runner.invoke(app, ["draft-contract", "___.csv", "--label", "y"])
    assert result.exit_code == 2
    assert "cannot make a contract name from '___.csv'; pass --name" in result.output


def test_draft_contract_refuses_to_overwrite(tmp_path: Path) -> None:
    sample = _write_sample(tmp_path / "sample.csv")
    out = tmp_path / "contract.yaml"
    out.write_text("keep me")
    result = runner.invoke(app, ["draft-contract", str(sample), "--label", "y", "--out", str(out)])
    assert result.exit_code == 2
    assert "exists; pass --force to overwrite it" in result.output
    assert out.read_text() == "keep me"


def test_draft_contract_missing_sample(tmp_path: Path) -> None:
    result = runner.invoke(app, ["draft-contract", str(tmp_path / "no.csv"), "--label", "y"])
    assert result.exit_code == 2
    assert "no.csv: no such file" in result.output


def test_draft_contract_unknown_suffix(tmp_path: Path) -> None:
    sample = tmp_path / "sample.xlsx"
    sample.write_text("x")
    result = runner.invoke(app, ["draft-contract", str(sample), "--label", "y"])
    assert result.exit_code == 2
    assert "use .csv or .parquet" in result.output


def test_draft_contract_bad_label(tmp_path: Path) -> None:
    sample = _write_sample(tmp_path / "sample.csv")
    result = runner.invoke(
        app, ["draft-contract", str(sample), "--label", "x", "--out", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 2
    assert "label column 'x' must hold only 0 and 1" in result.output


def test_missing_required_option(tmp_path: Path) -> None:
    sample = _write_sample(tmp_path / "sample.csv")
    result = runner.invoke(app, ["draft-contract", str(sample)])
    assert result.exit_code == 2
    assert "--label" in result.output


def test_the_loop_commands_are_listed() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "watch" in result.output and "simulate" in result.output


def test_watch_without_params_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["watch", "--once"])
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'params.yaml'}: no such file (run from the project root)" in (
        result.output
    )
