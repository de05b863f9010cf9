"""Opens a Snakemake HTML report in headless Chromium, as a reader would: every figure is
clicked open, screenshotted and checked to have drawn; console errors are collected."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

VIEWPORT = {"width": 1600, "height": 1200}


@dataclass
class Seen:
    """What the browser showed: each figure's screenshot size and the page's text with it
    open (its caption included), and console errors."""

    shots: dict[str, tuple[int, int]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def drawn(path: Path) -> bool:
    """A screenshot shows a figure, not a blank or a broken-image box: many distinct
    colours and ink on more than a sliver of it."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    ink = (pixels.min(axis=2) < 200).mean()
    return len(np.unique(pixels.reshape(-1, 3), axis=0)) > 64 and ink > 0.01


def open_figures(report: Path, figures: dict[str, str], shots: Path) -> Seen:
    """Opens ``report`` and, for each figure file name -> category, clicks the category,
    opens the file and screenshots the image it shows into ``shots``."""
    from playwright.sync_api import sync_playwright

    seen = Seen()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        page.on("console", lambda m: m.type == "error" and seen.errors.append(m.text))
        page.on("pageerror", lambda e: seen.errors.append(str(e)))
        for name, category in figures.items():
            page.goto(report.as_uri())
            page.get_by_role("link", name=category, exact=True).click()
            row = page.locator("tr", has_text=name)
            row.locator("a[iconname=eye]").click()
            image = page.locator(f'img[src*="filename={name}"]')
            image.wait_for(state="visible", timeout=10_000)
            if image.evaluate("e => e.naturalWidth") == 0:
                continue  # not decoded: left out of seen.shots
            out = shots / name
            image.screenshot(path=str(out))
            row.locator("a[iconname=information-circle]").click()
            seen.text[name] = page.inner_text("body")
            if drawn(out):
                seen.shots[name] = Image.open(out).size
        browser.close()
    return seen
