"""cfg and autoguidance on a tiny real class-conditional model: the rule, the interval, batching."""

import numpy as np
import pytest

from service.core.errors import RequestError
from service.core.offline import collect, sample
from service.core.plan import make_plan
from service.core.spec import SampleSpec
from service.core.step import advance, make_chunks

N, SEED = 300, 3


def run(model, variant="baseline", scale=None, guide=None, **kw):
    return sample(model, SampleSpec(variant, scale, N, SEED, **kw), guide).samples


def test_w_one_is_the_conditional_model_and_w_zero_the_unconditional(conditional_model):
    conditional = run(conditional_model, label=1)
    np.testing.assert_array_equal(run(conditional_model, "cfg", 1.0, label=1), conditional)
    # eps(null) + 0 (eps(c) - eps(null)) is eps(null) exactly
    np.testing.assert_array_equal(
        run(conditional_model, "cfg", 0.0, label=1), run(conditional_model)
    )
    assert not np.array_equal(run(conditional_model, "cfg", 3.0, label=1), conditional)


def test_the_guided_eps_is_linear_in_w(conditional_model):
    # one deterministic DDIM step is affine in eps_w, so out(w) = out(0) + w (out(1) - out(0))
    def one_step(w):
        return run(conditional_model, "cfg", w, label=0, steps=1, sampler="ddim")

    out0, out1 = one_step(0.0), one_step(1.0)
    np.testing.assert_allclose(one_step(4.0), out0 + 4.0 * (out1 - out0), rtol=1e-4, atol=1e-4)


def test_an_interval_applies_w_only_inside_it(conditional_model):
    sigmas = (1 / conditional_model.schedule.alpha_bar.double() - 1).sqrt()
    everything = (0.0, float(sigmas.max()) + 1)
    np.testing.assert_array_equal(
        run(conditional_model, "cfg", 3.0, label=0, interval=everything),
        run(conditional_model, "cfg", 3.0, label=0),
    )
    nothing = (1e3, 2e3)  # above every noise level: the conditional model alone, no extra pass
    plan = make_plan(
        conditional_model, SampleSpec(variant="cfg", scale=3.0, label=0, interval=nothing)
    )
    assert plan.guided_evaluations == 0
    np.testing.assert_array_equal(
        run(conditional_model, "cfg", 3.0, label=0, interval=nothing),
        run(conditional_model, label=0),
    )
    middle = make_plan(
        conditional_model, SampleSpec(variant="cfg", scale=3.0, label=0, interval=(0.3, 3.0))
    )
    inside = ((sigmas >= 0.3) & (sigmas <= 3.0)).sum().item()
    assert middle.guided_evaluations == inside and 0 < inside < middle.evaluations


def test_autoguidance_at_w_zero_is_the_guide(conditional_model, guide_model):
    guided = run(conditional_model, "autoguidance", 0.0, label=1, guide=guide_model)
    np.testing.assert_allclose(guided, run(guide_model, label=1), atol=1e-5)
    stronger = run(conditional_model, "autoguidance", 2.0, label=1, guide=guide_model)
    assert not np.allclose(stronger, run(conditional_model, label=1))


def test_rows_of_other_classes_weights_and_variants_batch_bit_for_bit(
    conditional_model, guide_model
):
    requests = [
        dict(variant="cfg", scale=3.0, label=0),
        dict(variant="cfg", scale=5.0, label=1, interval=(0.3, 3.0)),
        dict(variant="autoguidance", scale=2.0, label=0, guide=guide_model),
        dict(variant="baseline", label=None),
        dict(variant="cfg", scale=2.0, label="right", steps=40, sampler="ddim"),
    ]
    alone, together = [], []
    for i, r in enumerate(requests):
        guide = r.pop("guide", None)
        alone.append(sample(conditional_model, SampleSpec(n=260, seed=i, **r), guide).samples)
        plan = make_plan(conditional_model, SampleSpec(**r), guide)
        together.append(make_chunks(plan, 260, i, conditional_model.device))
    chunks = [c for cs in together for c in cs]
    step = 0
    while live := [c for c in chunks if not c.done]:
        step += 1
        advance(conditional_model, live[::-1] if step % 2 else live)
    for expected, cs in zip(alone, together, strict=True):
        np.testing.assert_array_equal(collect(cs), expected)


@pytest.mark.parametrize(
    ("variant", "kw", "field"),
    [
        ("cfg", {}, "class"),  # cfg needs a class
        ("cfg", {"label": "middle"}, "class"),
        ("cfg", {"label": 2}, "class"),
        ("cfg", {"label": 0, "interval": (2.0, 1.0)}, "guidance_interval"),
        ("baseline", {"interval": (0.1, 1.0)}, "guidance_interval"),
        ("autoguidance", {"label": 0}, "guide_model"),  # the core needs the guide given
        ("density", {"label": 0}, "variant"),
    ],
)
def test_bad_requests_name_their_field(conditional_model, variant, kw, field):
    with pytest.raises(RequestError) as e:
        make_plan(conditional_model, SampleSpec(variant, **kw))
    assert e.value.field == field and e.value.allowed


def test_a_class_on_an_unconditional_model_is_refused(plain_model, conditional_model):
    with pytest.raises(RequestError) as e:
        make_plan(plain_model, SampleSpec(variant="baseline", label=0))
    assert e.value.field == "class" and "not class-conditional" in str(e.value)
    with pytest.raises(RequestError) as e:
        make_plan(plain_model, SampleSpec(variant="cfg", label=None))
    assert e.value.field == "variant"
    with pytest.raises(RequestError) as e:  # a guide of another parameterisation
        make_plan(conditional_model, SampleSpec(variant="autoguidance", label=0), guide=plain_model)
    assert e.value.field == "guide_model"
