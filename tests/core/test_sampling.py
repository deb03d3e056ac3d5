import numpy as np
import pytest
import torch

from service.core.guiders.paper import GuidanceUnavailable
from service.core.offline import collect, count_nonfinite, sample
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import CHUNK_ROWS, advance, chunk_seed, chunk_sizes, make_chunks


def test_sampler_is_reproducible_for_a_seed(plain_model):
    a = sample(plain_model, SampleSpec(variant="baseline", n=300, seed=7))
    b = sample(plain_model, SampleSpec(variant="baseline", n=300, seed=7))
    np.testing.assert_array_equal(a.samples, b.samples)
    assert a.samples.shape == (300, 2) and a.nonfinite == 0
    c = sample(plain_model, SampleSpec(variant="baseline", n=300, seed=8))
    assert not np.array_equal(a.samples, c.samples)


def test_a_chunk_does_not_depend_on_what_is_sampled_beside_it(plain_model, density_model):
    """Each chunk of rows has its own random stream: a full first chunk is the same in any n."""
    a = sample(plain_model, SampleSpec(variant="baseline", n=CHUNK_ROWS + 40, seed=3)).samples
    b = sample(plain_model, SampleSpec(variant="baseline", n=3 * CHUNK_ROWS, seed=3)).samples
    np.testing.assert_array_equal(a[:CHUNK_ROWS], b[:CHUNK_ROWS])
    assert not np.array_equal(b[:CHUNK_ROWS], b[CHUNK_ROWS : 2 * CHUNK_ROWS])
    g_a = sample(density_model, SampleSpec(variant="smoothed", n=CHUNK_ROWS + 1, seed=3)).samples
    g_b = sample(density_model, SampleSpec(variant="smoothed", n=2 * CHUNK_ROWS, seed=3)).samples
    np.testing.assert_array_equal(g_a[:CHUNK_ROWS], g_b[:CHUNK_ROWS])


def test_chunks_cover_the_request():
    assert chunk_sizes(1) == [1]
    assert chunk_sizes(CHUNK_ROWS * 2 + 3) == [CHUNK_ROWS, CHUNK_ROWS, 3]


@pytest.mark.parametrize("variant", ["fixed", "adaptive", "smoothed", "minimal"])
def test_guided_variants_need_a_density_gradient(plain_model, density_model, variant):
    # a plain model has no density head: it is refused, naming the gradient it does offer
    with pytest.raises(GuidanceUnavailable, match="offers gradient 'score'") as e:
        sample(plain_model, SampleSpec(variant=variant, n=4))
    assert e.value.field == "model"
    with pytest.raises(GuidanceUnavailable, match="offers gradient 'score'") as e:
        sample(plain_model, SampleSpec(variant=variant, n=4, gradient="head"))
    assert e.value.field == "gradient"
    out = sample(density_model, SampleSpec(variant=variant, n=64, seed=1))
    assert out.samples.shape == (64, 2) and out.variant == variant and out.gradient == "head"
    out = sample(plain_model, SampleSpec(variant=variant, n=64, seed=1, gradient="score"))
    assert out.samples.shape == (64, 2) and out.gradient == "score"


def test_baseline_builds_no_autograd_graph(plain_model, monkeypatch):
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        sample(plain_model, SampleSpec(variant="baseline", n=32))
    assert saved == []


def test_guided_sampling_takes_one_gradient_sweep_per_step_for_the_whole_batch(
    density_model, monkeypatch
):
    import service.core.passes as passes

    calls = []
    real = passes.infer_with_density_gradient

    def counting(weights, x, t_hidden):
        calls.append(x.shape[0])
        return real(weights, x, t_hidden)

    monkeypatch.setattr(passes, "infer_with_density_gradient", counting)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        sample(density_model, SampleSpec(variant="fixed", n=600, steps=10))
    assert calls == [600] * 10  # one sweep per step, for all 600 rows together
    assert saved == []  # and no autograd graph


def test_guidance_changes_the_samples_and_scale_zero_does_not(density_model):
    base = sample(density_model, SampleSpec(variant="baseline", n=50, seed=2)).samples
    fixed = sample(density_model, SampleSpec(variant="fixed", scale=0.5, n=50, seed=2)).samples
    zero = sample(density_model, SampleSpec(variant="fixed", scale=0.0, n=50, seed=2)).samples
    assert not np.allclose(base, fixed)
    np.testing.assert_allclose(base, zero, rtol=1e-5, atol=1e-5)


def test_respaced_sampling_runs_fewer_steps(plain_model):
    out = sample(plain_model, SampleSpec(variant="baseline", n=100, steps=10))
    assert out.samples.shape == (100, 2)
    with pytest.raises(ValueError, match=r"steps must be in \[1, 100\]"):
        sample(plain_model, SampleSpec(variant="baseline", n=4, steps=0))


def test_nonfinite_rows_are_counted():
    a = np.array([[0, 1], [np.nan, 1], [np.inf, -np.inf], [2, 3]], dtype=np.float32)
    assert count_nonfinite(a) == 2


@pytest.mark.parametrize("variant, scale", [("baseline", None), ("fixed", 0.3)])
def test_matches_a_plain_reference_loop(density_model, variant, scale):
    """The reference's loop written out (tiny-diffusion's step), for one chunk of rows."""
    n, seed, s, net = 100, 5, density_model.schedule, density_model.network
    g = torch.Generator().manual_seed(chunk_seed(seed, 0))
    x = torch.randn(n, 2, generator=g)
    for t in reversed(range(100)):
        tt = torch.full((n,), t)
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad():
            out = net(xg, tt)
            (grad,) = torch.autograd.grad(out[:, 2].sum(), xg)
        eps = out[:, :2].detach() + (scale or 0.0) * grad
        x0 = s.sqrt_inv_alpha_bar[t] * x - s.sqrt_inv_alpha_bar_minus_one[t] * eps
        mean = s.posterior_mean_coef1[t] * x0 + s.posterior_mean_coef2[t] * x
        x = mean + s.posterior_std[t] * torch.randn(n, 2, generator=g)
    ours = sample(density_model, SampleSpec(variant=variant, scale=scale, n=n, seed=seed)).samples
    if variant == "baseline":
        np.testing.assert_allclose(ours, x.numpy(), rtol=1e-4, atol=1e-4)
    else:
        # Our gradient is hand-written, the reference's is autograd's: both float32, 1e-6
        # apart per step. The density head's steep gradients grow that over 100 guided steps,
        # so a few rows drift by a few hundredths; the bulk agrees to 1e-3.
        diff = np.abs(ours - x.numpy())
        assert np.median(diff) < 1e-3 and diff.max() < 0.2


@pytest.mark.parametrize("variant", ["baseline", "fixed", "adaptive", "smoothed", "minimal"])
def test_offline_sampling_equals_the_batchers_steps_bit_for_bit(density_model, variant):
    """sample() runs a request as one block; the server steps chunks mixed with other requests.
    Both must give the same numbers, or a request's result would depend on where it ran."""
    n, seed = CHUNK_ROWS + 37, 5
    offline = sample(density_model, SampleSpec(variant=variant, n=n, seed=seed)).samples
    ours = make_chunks(
        make_plan(density_model, SampleSpec(variant=variant)), n, seed, density_model.device
    )
    other_variant = "baseline" if variant != "baseline" else "smoothed"
    others = make_chunks(
        make_plan(density_model, SampleSpec(variant=other_variant)), 50, 9, density_model.device
    )
    advance(density_model, ours[:1])  # the first chunk starts a step ahead of the rest
    for _ in range(density_model.schedule.num_steps):
        advance(density_model, [c for c in ours + others if not c.done])
    np.testing.assert_array_equal(offline, collect(ours))
