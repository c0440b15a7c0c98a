"""The report opens in headless Chromium (Debian's package) and the screenshot shows content."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from pipeline.report.build import write_report
from tests.report.fixtures import make_dataset

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1100,2400"]
PLOT_BLUE = np.array([0x3B, 0x6E, 0xA8])

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                "(apt-get install -y chromium; .ci/run installs it)")


def test_screenshot_is_not_blank(tmp_path):
    ds = make_dataset(tmp_path / "data", n_code=12, n_docs=3)
    report = write_report(str(ds.out))
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    f"file://{report}"], check=True, timeout=120, capture_output=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (2400, 1100)
    assert pixels.std() > 20, "the screenshot is blank"
    blue = (np.abs(pixels - PLOT_BLUE).max(axis=2) < 12).mean()
    assert blue > 0.005, f"no plot bars rendered (share of bar-coloured pixels {blue:.4f})"
