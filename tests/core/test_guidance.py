import math

import pytest
import torch

from service.core.guidance import VARIANTS, get_variant, guided_eps, resolve_scale

T = 100
t = torch.tensor([99, 50, 0])


def test_registry_has_the_five_variants_with_spec_defaults():
    paper = {k: v for k, v in VARIANTS.items() if v.kind == "paper"}
    assert {k: v.default_scale for k, v in paper.items()} == {
        "baseline": 0.0,
        "fixed": 0.1,
        "adaptive": 0.2,
        "smoothed": 0.01,
        "minimal": 0.01,
    }
    assert not VARIANTS["baseline"].needs_gradient
    assert all(v.needs_gradient for k, v in paper.items() if k != "baseline")
    # issue 12's two, whose scale is a quantile
    assert {k: (v.kind, v.scale_range) for k, v in VARIANTS.items() if v.kind != "paper"} == {
        "density": ("density", (0.001, 0.999)),
        "prior": ("prior", (0.001, 0.999)),
        # issue 15's two, whose scale is the guidance weight w
        "cfg": ("cfg", (0.0, 10.0)),
        "autoguidance": ("autoguidance", (0.0, 10.0)),
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
    v = get_variant(name)
    got = v.gamma(t, T, resolve_scale(v, None))
    torch.testing.assert_close(got, torch.tensor(expected))


def test_scale_overrides_the_default():
    v = get_variant("fixed")
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
    alpha = col(VARIANTS["smoothed"].smoothing)
    eps, grad = torch.zeros(1, 2), torch.ones(1, 2)
    out1, g = guided_eps(eps, grad, col(1.0), alpha, torch.zeros(1, 2))
    torch.testing.assert_close(out1, torch.full((1, 2), 0.1))  # 0.9 * 0 + 0.1 * 1
    out2, g = guided_eps(eps, grad, col(1.0), alpha, g)
    torch.testing.assert_close(out2, torch.full((1, 2), 0.19))  # 0.9 * 0.1 + 0.1 * 1
    assert VARIANTS["fixed"].smoothing is None


def test_unknown_variant_lists_the_valid_names():
    with pytest.raises(
        ValueError,
        match=r"\['adaptive', 'autoguidance', 'baseline', 'cfg', 'density', 'fixed', 'minimal', "
        r"'prior',",
    ):
        get_variant("turbo")


@pytest.mark.parametrize("scale", [math.nan, math.inf, -math.inf])
def test_a_non_finite_scale_is_refused(scale):
    with pytest.raises(ValueError, match="finite"):
        resolve_scale(get_variant("fixed"), scale)
