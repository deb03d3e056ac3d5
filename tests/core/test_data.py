import numpy as np
import pytest

from service.core.data import DATASETS, dino_points, get_dataset, reference_points


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_shape_dtype_and_determinism(name):
    a = get_dataset(name)
    assert a.shape == (100_000, 2) and a.dtype == np.float32
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, get_dataset(name))
    assert not np.array_equal(get_dataset(name, 1000, seed=1), get_dataset(name, 1000, seed=2))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match=r"circle.*dino.*line.*moons"):
        get_dataset("spiral")


def test_line_is_the_scaled_box():
    a = get_dataset("line")
    assert -2 <= a[:, 0].min() < -1.99 and 1.99 < a[:, 0].max() <= 2
    assert -4 <= a[:, 1].min() < -3.99 and 3.99 < a[:, 1].max() <= 4


def test_circle_has_17_clusters_with_about_4_percent_at_origin():
    a = get_dataset("circle")
    radius = np.linalg.norm(a, axis=1)
    at_origin = radius < 0.2
    assert 0.02 < at_origin.mean() < 0.06
    ring = a[~at_origin]
    assert np.all(np.abs(np.linalg.norm(ring, axis=1) - 3) < 0.1)
    angles = np.sort(np.degrees(np.arctan2(ring[:, 1], ring[:, 0])))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 360]))
    assert (gaps > 5).sum() == 16  # 16 tight directions, separated by at least 18 degrees


def test_moons_arcs_after_the_affine_map():
    a = get_dataset("moons")
    # inverse of x <- (x + 0.3) * 2 - 1, y <- (y + 0.3) * 3 - 1
    x = (a[:, 0] + 1) / 2 - 0.3
    y = (a[:, 1] + 1) / 3 - 0.3
    outer = np.abs(np.hypot(x, y) - 1) < 0.15
    inner = np.abs(np.hypot(x - 1, y - 0.5) - 1) < 0.15
    assert (outer | inner).mean() > 0.999
    assert abs((outer & ~inner).mean() - (inner & ~outer).mean()) < 0.02  # n/2 on each arc


def test_dino_uses_the_shipped_142_points():
    assert dino_points().shape == (142, 2)
    a = get_dataset("dino")
    base = (dino_points() / [54, 48] - 1) * 4
    nearest = np.min(np.abs(a[:2000, None, :] - base[None]).max(axis=2), axis=1)
    assert np.median(nearest) < 0.15 * 4 / 48 * 3


def test_reference_points_are_read_only():
    ref = reference_points("line")
    with pytest.raises(ValueError):
        ref[0, 0] = 1.0
