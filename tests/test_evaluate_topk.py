"""Top-1/top-5 from ``timm.utils.accuracy`` against the former hand-written count, on random logits."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tnt_rest_lite.train.evaluate import batch_hits, evaluate


def former_hits(logits, labels):
    k = min(5, logits.shape[1])
    hits = logits.topk(k, dim=1).indices.eq(labels[:, None])
    return int(hits[:, 0].sum().item()), int(hits.any(dim=1).sum().item())


@pytest.mark.parametrize(("batch", "classes"), [(1, 10), (37, 10), (256, 100), (64, 3), (500, 5), (8, 1)])
def test_batch_hits_equal_the_former_count(batch, classes):
    generator = torch.Generator().manual_seed(batch * 1000 + classes)
    for _ in range(5):
        logits = torch.randn(batch, classes, generator=generator)
        labels = torch.randint(classes, (batch,), generator=generator)
        assert batch_hits(logits, labels) == former_hits(logits, labels)


def test_evaluate_equals_the_former_metrics():
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(203, 12, generator=generator), torch.randint(20, (203,), generator=generator)
    model = torch.nn.Linear(12, 20)
    metrics = evaluate(model, DataLoader(TensorDataset(images, labels), batch_size=32))
    with torch.no_grad():
        top1, top5 = former_hits(model(images), labels)
    assert metrics["n"] == 203
    assert metrics["top1"] == pytest.approx(100.0 * top1 / 203, abs=1e-12)
    assert metrics["top5"] == pytest.approx(100.0 * top5 / 203, abs=1e-12)
