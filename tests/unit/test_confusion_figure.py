"""The CTA confusion matrix as a readable, labelled figure (issue 16): the most confused classes of many, with
their names, at a size where a class is a cell, not 4 pixels."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from aegir.eval.classification import confusion_figure, most_confused


def _cm(n: int = 60) -> torch.Tensor:
    cm = torch.zeros(n, n, dtype=torch.long)
    cm.fill_diagonal_(5)
    cm[3, 7] = 9  # true 3 predicted as 7
    cm[12, 3] = 4
    cm[40, 41] = 2
    return cm


def test_most_confused_picks_the_classes_with_off_diagonal_mass() -> None:
    assert most_confused(_cm(), 4) == [3, 7, 12, 40]  # 40 and 41 tie on mass 2: the lower index
    assert most_confused(torch.eye(5, dtype=torch.long), 10) == [0, 1, 2, 3, 4]


def test_figure_is_labelled_and_readable() -> None:
    labels = [f"schema:Class{i}" for i in range(60)]
    image = confusion_figure(_cm(), labels, top_k=6)
    channels, height, width = image.shape
    assert channels == 3 and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert width >= 6 * 30 + 100 and height >= 6 * 30 + 100  # cells of 30 px plus the label margins
    pixels = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    left_margin = pixels[120:, :60]  # where the row labels are written
    assert (left_margin < 128).any(), "row labels drawn"
    # TensorBoard's image plugin stores a PNG: it encodes and decodes at the same size
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).size == (width, height)
