"""The two-convention FLOP table of every full-size model (complexity.flop_convention_table)."""

from __future__ import annotations

from tnt_rest_lite.measure.complexity import flop_convention_markdown, flop_convention_table
from tnt_rest_lite.measure.conventions import PUBLISHED_FLOPS_CONVENTION, flop_conventions
from tnt_rest_lite.models._registry import create_model


def test_flop_convention_table_matches_flop_conventions() -> None:
    model = create_model("rest_lite_msa").eval()
    (row,) = flop_convention_table({"rest_lite_msa": model}, names=["rest_lite_msa"])
    counts = flop_conventions(model, 224)
    assert row["with_products"] == counts["fvcore"]
    assert row["without_products"] == counts["fvcore_without_attention_products"]
    assert row["with_products"] - row["without_products"] == row["attention_products"] > 0
    assert row["published_gflops"] == 1.6
    # the supplement's 1.6 G is read in the convention without the products, as chapter 02 derives
    assert PUBLISHED_FLOPS_CONVENTION == "fvcore_without_attention_products"
    assert row["closer"] == "without"
    table = flop_convention_markdown([row])
    assert table.count("\n") == 2 and "ResT-Lite (MSA)" in table and "**" in table


def test_fvcore_counts_layernorm_five_per_element() -> None:
    # book/conventions.md and chapter 01 state this count; it is fvcore's, measured here
    import torch

    from tnt_rest_lite.measure.complexity import count_flops

    x = torch.zeros(1, 10, 8)
    assert count_flops(torch.nn.LayerNorm(8), x).total == 5 * x.numel()
    assert count_flops(torch.nn.LayerNorm(8, elementwise_affine=False), x).total == 4 * x.numel()
