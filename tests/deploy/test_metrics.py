"""`promtool check metrics` accepts the live server's /metrics exposition."""

from __future__ import annotations

import subprocess

import pytest
from deployutil import DOCUMENTED, Laser, families

pytestmark = pytest.mark.timeout(120)


def test_promtool_check_metrics_on_live_exposition(promtool: str, laser: Laser) -> None:
    text = laser.exposition()
    # The warm-up calls created labelled series: a lint run on an empty exposition proves little.
    for series in (
        'laser_requests_total{code="OK",method="Rerank"}',
        'laser_requests_total{code="NOT_FOUND",method="Feedback"}',
        'laser_requests_total{code="INVALID_ARGUMENT",method="Rerank"}',
        "laser_feedback_reward_bucket{",
        'laser_rm_selected_total{policy="ensemble"',
    ):
        assert series in text, f"{series} missing from the exposition"
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def test_exposition_has_every_documented_metric(laser: Laser) -> None:
    exported = families(laser.exposition())
    assert DOCUMENTED <= exported, DOCUMENTED - exported
