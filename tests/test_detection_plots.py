"""Detections drawn onto the image tensor with ``torchvision.utils.draw_bounding_boxes``."""

from __future__ import annotations

import torch

from tnt_rest_lite.detection.plots import draw_detections, plot_detections


def test_boxes_are_drawn_onto_the_image():
    image = torch.zeros(3, 48, 64)
    target = {"boxes": torch.tensor([[4.0, 4.0, 20.0, 30.0]]), "labels": torch.tensor([1])}
    prediction = {
        "boxes": torch.tensor([[30.0, 10.0, 60.0, 40.0], [2.0, 36.0, 12.0, 46.0]]),
        "labels": torch.tensor([3, 5]),
        "scores": torch.tensor([0.9, 0.2]),
    }
    drawn = draw_detections(image, target, prediction, score_threshold=0.5)
    assert drawn.dtype == torch.uint8 and drawn.shape == (3, 48, 64)
    assert drawn[:, 4, 12].tolist() == [255, 255, 255]  # the ground truth's top edge: white
    assert drawn[:, 25, 60].tolist() == [255, 0, 0]  # the kept prediction's right edge: red
    assert drawn[:, 41, 2].tolist() == [0, 0, 0]  # the prediction under the threshold is not drawn
    # inside the kept box, besides its edges, the red label "3 0.90" left pixels
    inside = drawn[0, 11:40, 31:60]
    assert (inside > 0).any() and not (drawn[1:, 11:40, 31:60] > 0).any()


def test_plot_detections_shows_one_axis_per_image():
    scene = (torch.rand(3, 32, 32), {"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([0])})
    prediction = {"boxes": torch.tensor([[2.0, 2.0, 10.0, 10.0]]), "labels": torch.tensor([0]), "scores": torch.ones(1)}
    figure = plot_detections([scene, scene], [prediction, prediction], [0, 1])
    assert len(figure.axes) == 2
    assert figure.axes[0].images[0].get_array().shape == (32, 32, 3)
