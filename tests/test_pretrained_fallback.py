"""Offline, the pretrained fallback prints one line and none of the hub's retry messages."""

from __future__ import annotations

import pytest

from tnt_rest_lite.models import _registry


def test_fallback_prints_one_line(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_registry, "_hub_reachable", lambda *a, **k: False)
    model, pretrained = _registry.create_pretrained_or_random("rest_lite_mini")
    out, err = capfd.readouterr()
    assert not pretrained and model is not None
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "random weights" in lines[0] and "Retry" not in out + err


def test_fallback_when_the_hub_fails(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    # reachable, but the download fails (e.g. DNS of the file host): still one line, no noise
    monkeypatch.setattr(_registry, "_hub_reachable", lambda *a, **k: True)
    real = _registry.create_model

    def failing(name: str, pretrained: bool = False, **kwargs: object):  # noqa: ANN202
        if pretrained:
            import logging
            import sys

            logging.getLogger("huggingface_hub").warning("Retrying in 1s [Retry 1/5].")
            print("Retrying in 2s [Retry 2/5].", file=sys.stderr)
            raise RuntimeError("Could not fetch the pretrained weights")
        return real(name, **kwargs)

    monkeypatch.setattr(_registry, "create_model", failing)
    _, pretrained = _registry.create_pretrained_or_random("rest_lite_mini")
    out, err = capfd.readouterr()
    assert not pretrained
    assert len([line for line in (out + err).splitlines() if line.strip()]) == 1
    assert "Retry" not in out + err
