"""The book's two display helpers: source listings taken from the object, checked shapes."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch

from tnt_rest_lite.book.show import check_shape, show_source, source_of
from tnt_rest_lite.layers.attention import Attention
from tnt_rest_lite.models.trl_tnt import PixelEmbed


def test_source_of_is_the_objects_own_source():
    assert source_of(PixelEmbed) == inspect.getsource(PixelEmbed)
    assert source_of(PixelEmbed).startswith("class PixelEmbed(nn.Module):")
    method = source_of(Attention.forward)
    assert method.startswith("def forward(self, x")
    assert method == textwrap.dedent(inspect.getsource(Attention.forward))


def test_source_excerpt_starts_and_ends_on_the_named_lines():
    part = source_of(Attention.forward, start="scaled_dot_product_attention", end="return")
    assert part.splitlines()[0].lstrip().startswith("out = F.scaled_dot_product_attention")
    assert part.splitlines()[-1].strip().startswith("return")
    with pytest.raises(ValueError, match="does not occur"):
        source_of(Attention.forward, start="no such line")


def test_show_source_prints_outside_ipython(capsys):
    show_source(PixelEmbed.patchify)
    out = capsys.readouterr().out
    assert "def patchify(self, x: torch.Tensor) -> torch.Tensor:" in out
    assert out.strip() == source_of(PixelEmbed.patchify).strip()


def test_check_shape_passes_wildcards_and_names_both_shapes(capsys):
    t = torch.zeros(2, 3, 4)
    assert check_shape(t, (2, None, -1), "t") is t
    assert capsys.readouterr().out.strip() == "t: (2, 3, 4)"
    with pytest.raises(AssertionError, match=r"x: expected shape \(2, 5, 4\), got \(2, 3, 4\)"):
        check_shape(t, (2, 5, 4), "x")
    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got \(2, 3, 4\)"):
        check_shape(t, (2, 3), "x")


def test_show_source_displays_a_python_code_block_in_ipython(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", shown.append)
    show_source(Attention.forward, start="scores = ", end="out = self.attn_drop")
    text = shown[0].data
    first = inspect.getsourcelines(Attention.forward)[1]
    offset = next(i for i, line in enumerate(inspect.getsource(Attention.forward).splitlines()) if "scores = " in line)
    assert f"(line {first + offset} of `tnt_rest_lite/layers/attention.py`)" in text
    assert "```python\nscores = (q @ k.transpose(-2, -1)) * self.scale" in text
    assert text.rstrip().endswith("```")
