"""The ground-truth experiment's tilted target: known answers on the boxes."""

import math

import numpy as np

from experiments.ground_truth import tilted_grid, tilted_log_density


def test_the_tilted_target_at_w_1_is_the_class_conditional():
    log_z, _ = tilted_grid("boxes", 1, 1.0, count=600)
    assert abs(log_z) < 1e-3  # p(x | c) is normalised already


def test_on_disjoint_boxes_every_w_tilts_to_the_uniform_box():
    """p(x | c)^w p(x)^(1 - w) with p(x) = p(x | c) / 2 on c's box: uniform on it for any w."""
    for w in (2.0, 5.0):
        log_z, draw = tilted_grid("boxes", 1, w, count=600)
        inside = np.array([[2.0, 0.0], [1.2, -0.9]])
        assert np.allclose(
            tilted_log_density("boxes", 1, w, inside, log_z), -math.log(4), atol=1e-6
        )
        x = draw(4000, 0)
        assert abs(x[:, 0].mean() - 2.0) < 0.05 and (x[:, 0] > 0.98).all()
