import math

import pytest
import torch

from service.core.guiders import GUIDERS, get_guider
from service.core.guiders.paper import guided_eps
from service.core.plan import resolve_scale

T = 100
t = torch.tensor([99, 50, 0])


def test_registry_has_the_five_variants_with_the_papers_defaults():
    paper = {k: v for k, v in GUIDERS.items() if v.family == "paper"}
    assert {k: v.default_scale for k, v in paper.items()} == {
        "baseline": 0.0,
        "fixed": 0.1,
        "adaptive": 0.2,
        "smoothed": 0.01,
        "minimal": 0.01,
    }
    assert not GUIDERS["baseline"].needs_gradient
    assert all(v.needs_gradient for k, v in paper.items() if k != "baseline")
    # Density and Prior Guidance, whose scale is a quantile
    assert {k: (v.family, v.scale_range) for k, v in GUIDERS.items() if v.family != "paper"} == {
        "density": ("density", (0.001, 0.999)),
        "prior": ("prior", (0.001, 0.999)),
        # the guiders of class-conditional models, whose scale is the guidance weight w
        "cfg": ("cfg", (0.0, 10.0)),
        "autoguidance": ("autoguidance", (0.0, 10.0)),
        "apg": ("cfg", (0.0, 10.0)),
        "cfg_zero_star": ("cfg", (0.0, 10.0)),
        # CFG++'s l, a far stronger unit than w at many steps
        "cfg_plus_plus": ("cfg", (0.0, 1.0)),
    }


@pytest.mark.parametrize(
    "name, expected",
    [
        ("baseline", [0.0, 0.0, 0.0]),
        ("fixed", [0.1, 0.1, 0.1]),
        ("adaptive", [0.2 * 0.01, 0.2 * 0.5, 0.2]),
        ("smoothed", [0.01 * 0.01, 0.01 * 0.5, 0.01]),
        ("minimal", [0.01, 0.01, 0.01]),
    ],
)
def test_gamma_at_a_few_t(name, expected):
    v = get_guider(name)
    got = v.gamma(t, T, resolve_scale(v, None))
    torch.testing.assert_close(got, torch.tensor(expected))


def test_scale_overrides_the_default():
    v = get_guider("fixed")
    assert resolve_scale(v, 0.5) == 0.5
    torch.testing.assert_close(v.gamma(t, T, 0.5), torch.full((3,), 0.5))


def col(*values):
    return torch.tensor(values, dtype=torch.float32)[:, None]


def test_guided_eps_adds_gamma_times_gradient_per_row():
    eps, grad, zeros = torch.zeros(3, 2), torch.ones(3, 2), torch.zeros(3, 2)
    out, g = guided_eps(eps, grad, col(0.3, 0.0, 1.0), col(0, 0, 0), zeros)
    torch.testing.assert_close(out[:, 0], torch.tensor([0.3, 0.0, 1.0]))
    torch.testing.assert_close(g, grad)  # alpha = 0: the raw gradient, exactly


def test_smoothed_keeps_a_per_row_ema_of_the_gradient():
    alpha = col(GUIDERS["smoothed"].smoothing)
    eps, grad = torch.zeros(1, 2), torch.ones(1, 2)
    out1, g = guided_eps(eps, grad, col(1.0), alpha, torch.zeros(1, 2))
    torch.testing.assert_close(out1, torch.full((1, 2), 0.1))  # 0.9 * 0 + 0.1 * 1
    out2, g = guided_eps(eps, grad, col(1.0), alpha, g)
    torch.testing.assert_close(out2, torch.full((1, 2), 0.19))  # 0.9 * 0.1 + 0.1 * 1
    assert GUIDERS["fixed"].smoothing is None


def test_unknown_variant_lists_the_valid_names():
    with pytest.raises(
        ValueError,
        match=r"\['adaptive', 'apg', 'autoguidance', 'baseline', 'cfg', 'cfg_plus_plus', "
        r"'cfg_zero_star', 'density', 'fixed', 'minimal', 'prior',",
    ):
        get_guider("turbo")


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_a_non_finite_scale_is_refused(scale):
    with pytest.raises(ValueError, match="finite"):
        resolve_scale(get_guider("fixed"), scale)


def test_variants_are_listed_paper_first_then_by_family():
    """/variants' order; the registry once took its modules' alphabetical import order."""
    assert list(GUIDERS) == [
        "baseline", "fixed", "adaptive", "smoothed", "minimal", "density", "prior",
        "cfg", "apg", "cfg_plus_plus", "cfg_zero_star", "autoguidance",
    ]  # fmt: skip
