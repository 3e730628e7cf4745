"""The README's shapes example on Matterport's pyramid layout (ShapesFPNConfig as shipped)
learns the task: class-aware box mAP@0.5 on unseen shapes after 600 steps. Its own file (early
in the collection order), so that pytest-xdist trains it beside the C4 run of
tests/test_model.py and the many small files."""

from __future__ import annotations

import pytest
from test_model import E2E_MIN_MAP50, shapes, train_the_readme_way

from samples.shapes.shapes import ShapesFPNConfig, box_map50


@pytest.mark.slow
def test_fpn_layout_learns_the_shapes_class_aware(tmp_path):
    trained = train_the_readme_way(ShapesFPNConfig, tmp_path, epochs=3)
    assert trained["after"] <= 0.5 * trained["before"], (trained["before"], trained["after"])
    score = box_map50(trained["inference"], shapes(60, seed=4242))
    assert score >= E2E_MIN_MAP50, score
