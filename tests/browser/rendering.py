"""What a page painted: screenshots and how much of them is not blank, and explicit waits."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

WAIT_S = 60.0
SATURATED = 60  # a pixel whose channels differ by this much is a colour, not a grey


@dataclass(frozen=True)
class Painted:
    """What a screenshot shows: its distinct colours, the share of pixels that differ from
    the page's background (its most common colour), and the share of saturated pixels
    (chart marks, icons, coloured links: not the black, white and greys of text alone)."""

    path: Path
    colours: int
    ink: float  # 0..1
    coloured: float  # 0..1

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.colours} colours, {self.ink:.1%} not background, "
            f"{self.coloured:.1%} coloured"
        )


def painted(path: Path) -> Painted:
    """Count what the PNG at `path` shows (on its RGB pixels)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        counts = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
    total = sum(count for count, _ in counts)
    background = max(count for count, _ in counts)
    saturated = sum(count for count, rgb in counts if max(rgb) - min(rgb) >= SATURATED)
    return Painted(path, len(counts), 1 - background / total, saturated / total)


def screenshot(driver: Any, folder: Path, name: str) -> Painted:
    """Save the browser's viewport as `folder/name.png` and count what it shows."""
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
    return painted(path)


def element_screenshot(element: Any, folder: Path, name: str) -> Painted:
    """Save one element as `folder/name.png` and count what it shows."""
    path = folder / f"{name}.png"
    assert element.screenshot(str(path)), f"no screenshot of {name}"
    return painted(path)


def wait_for(driver: Any, css: str, what: str, timeout: float = WAIT_S) -> Any:
    """The first visible element matching `css`, waited for explicitly; a clear failure
    (with the page's title and URL) when it never shows."""
    from selenium.webdriver.common.by import By

    return _wait_visible(driver, By.CSS_SELECTOR, css, f"{what} ({css})", timeout)


def wait_for_text(driver: Any, text: str, what: str, timeout: float = WAIT_S) -> Any:
    """The first visible element whose text is `text` (exactly, spaces normalized; the
    innermost such element, however React split the text into nodes), waited for."""
    from selenium.webdriver.common.by import By

    literal = _xpath_literal(text)
    xpath = f"//*[normalize-space(.)={literal} and not(*[normalize-space(.)={literal}])]"
    return _wait_visible(driver, By.XPATH, xpath, f"{what} (text {text!r})", timeout)


def _wait_visible(driver: Any, by: str, value: str, described: str, timeout: float) -> Any:
    """Wait for the first visible match; fail naming it, the page and a screenshot."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(_first_visible(by, value))
    except TimeoutException:
        raise AssertionError(
            f"{described} not shown within {timeout:.0f} s on {driver.current_url} "
            f"(title {driver.title!r}; the page as it was: {_failure_shot(driver)})"
        ) from None


def _first_visible(by: str, value: str) -> Any:
    """A wait condition: the first of the matching elements that is displayed (a page may
    hold hidden copies, e.g. in tooltips, before the one a user sees)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def condition(driver: Any) -> Any:
        for element in driver.find_elements(by, value):
            try:
                if element.is_displayed():
                    return element
            except StaleElementReferenceException:  # React re-rendered it meanwhile
                continue
        return False

    return condition


def _failure_shot(driver: Any) -> str:
    """A screenshot of the page a wait gave up on, in a fresh temporary file: its path."""
    handle, name = tempfile.mkstemp(prefix="browser-failure-", suffix=".png")
    os.close(handle)
    return name if driver.save_screenshot(name) else "(no screenshot)"


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"
