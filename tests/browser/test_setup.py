"""What the browser tests say when this machine lacks Chromium (they fail, never skip)."""

from __future__ import annotations

from pathlib import Path

from tests.browser.conftest import missing_browser

HOW = "`make install` installs {} (apt-get install -y chromium chromium-driver)"


def test_a_missing_browser_or_driver_is_named_with_make_install(tmp_path: Path) -> None:
    present = tmp_path / "chromedriver"
    present.write_bytes(b"")
    absent, also_absent = tmp_path / "chromium", tmp_path / "other"

    assert missing_browser(absent, present) == f"{absent} not found: {HOW.format('it')}"
    assert missing_browser(absent, also_absent) == (
        f"{absent} and {also_absent} not found: {HOW.format('them')}"
    )
    assert missing_browser(present, present) is None
