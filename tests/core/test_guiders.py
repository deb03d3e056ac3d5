"""The guiders of class-conditional models beyond cfg (APG, CFG++, CFG-Zero*), the weight
schedules, and the plug-in interface itself, on a tiny real conditional model."""

import math

import numpy as np
import pytest
import torch

from service.core.errors import RequestError
from service.core.guiders import GUIDERS
from service.core.guiders.base import GuidedRows, Guider, Reference
from service.core.guiders.registry import register
from service.core.offline import collect, sample
from service.core.passes import model_eps
from service.core.plan import make_plan
from service.core.plan_columns import column_names
from service.core.samplers import get_sampler
from service.core.spec import SampleSpec
from service.core.step import advance, make_chunks

N, SEED = 300, 3


def run(model, variant, scale=None, **kw):
    # DDPM named: a request naming only `steps` gets the few-step default, a stochastic
    # multistep solver on whose trajectories two equal guiders' float rounding grows apart
    kw.setdefault("sampler", "ddpm")
    return sample(model, SampleSpec(variant, scale, N, SEED, label=0, **kw)).samples


def rows_of(guider, sampler, x, eps, ref, t, values, state=None):
    """GuidedRows for a direct call of `combine`, the plan columns given by name."""
    names = column_names(get_sampler(sampler).columns, guider.columns)
    columns = torch.zeros(len(x), max(names.values()) + 1)
    for name, value in values.items():
        columns[:, names[name]] = value
    state = torch.zeros(len(x), guider.state_width) if state is None else state
    return GuidedRows(None, x, eps, t, columns, names, state, [], ref)


class FakeSchedule:
    def __init__(self, ab):
        ab = torch.tensor(ab)
        self.sqrt_inv_alpha_bar = (1 / ab).sqrt()
        self.sqrt_inv_alpha_bar_minus_one = (1 / ab - 1).sqrt()


class FakeModel:
    def __init__(self, ab):
        self.schedule = FakeSchedule(ab)


def test_apg_step_by_hand():
    """One APG evaluation against the formula written out in numpy, momentum included."""
    g = GUIDERS["apg"]
    x = torch.tensor([[1.0, -0.5], [0.2, 0.3]])
    c = torch.tensor([[0.4, 0.1], [-0.3, 0.8]])
    u = torch.tensor([[0.1, 0.3], [0.2, 0.2]])
    prev = torch.tensor([[0.5, -0.2], [0.0, 0.1]])
    w, beta, r, eta = 4.0, -0.5, 0.3, 0.25
    rows = rows_of(
        g,
        "ddpm",
        x,
        c,
        u,
        torch.tensor([0, 1]),
        {"weight": w, "momentum": beta, "norm_threshold": r, "parallel": eta},
        prev,
    )
    rows.model = FakeModel([0.5, 0.8])
    got, state = g.combine(rows)
    X, C, U, P = (a.double().numpy() for a in (x, c, u, prev))
    ab = np.array([0.5, 0.8])[:, None]
    x0c, x0u = (X - np.sqrt(1 - ab) * C) / np.sqrt(ab), (X - np.sqrt(1 - ab) * U) / np.sqrt(ab)
    m = (x0c - x0u) + beta * P
    d = m * np.minimum(1, r / np.linalg.norm(m, axis=1, keepdims=True))
    unit = x0c / np.linalg.norm(x0c, axis=1, keepdims=True)
    par = (d * unit).sum(1, keepdims=True) * unit
    x0w = x0c + (w - 1) * (d - par + eta * par)
    want = (X - np.sqrt(ab) * x0w) / np.sqrt(1 - ab)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.numpy(), m, rtol=1e-5, atol=1e-6)


def test_apg_without_momentum_threshold_or_projection_is_cfg(conditional_model):
    params = {"momentum": 0.0, "norm_threshold": 1e3, "parallel": 1.0}
    apg = run(conditional_model, "apg", 3.0, guider_params=params, steps=20)
    cfg = run(conditional_model, "cfg", 3.0, steps=20)
    np.testing.assert_allclose(apg, cfg, rtol=1e-3, atol=1e-3)
    # the paper's defaults change the samples
    assert not np.allclose(run(conditional_model, "apg", 3.0, steps=20), cfg, atol=1e-3)
    # and at w = 1 it is the conditional model, bit for bit
    np.testing.assert_array_equal(
        run(conditional_model, "apg", 1.0, steps=20), run(conditional_model, "baseline", steps=20)
    )


def test_cfg_plus_plus_renoises_with_the_unconditional_eps(conditional_model):
    """Two deterministic DDIM steps written out: x0 from eps_l, the direction from eps_u."""
    m, lam = conditional_model, 0.3
    got = run(m, "cfg_plus_plus", lam, steps=2, sampler="ddim")
    plan = make_plan(m, SampleSpec("cfg_plus_plus", lam, steps=2, sampler="ddim", label=0))
    chunks = make_chunks(plan, N, SEED, m.device)
    x = torch.cat([c.draw() for c in chunks])
    s = m.schedule_for(2)
    ab = s.alpha_bar.double()
    for k in (1, 0):
        t = torch.full((N,), int(s.timesteps[k]))
        c = model_eps(m, x, t, False, label_uniform=0)[0].double()
        u = model_eps(m, x, t, False, label_uniform=m.null_label)[0].double()
        e = u + lam * (c - u)
        x0 = (x.double() - (1 - ab[k]).sqrt() * e) / ab[k].sqrt()
        ab_next = ab[k - 1] if k else torch.tensor(1.0, dtype=torch.float64)
        x = (ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * u).float()
    np.testing.assert_allclose(got, x.numpy(), rtol=1e-4, atol=1e-4)


def test_cfg_plus_plus_on_one_step_is_cfg(conditional_model):
    """The last step re-noises nothing (renoise = 0): one step is cfg at w = l."""
    for smp in ("ddpm", "ddim", "heun"):
        a = run(conditional_model, "cfg_plus_plus", 0.7, steps=1, sampler=smp)
        b = run(conditional_model, "cfg", 0.7, steps=1, sampler=smp)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cfg_zero_star_scale_by_hand():
    g = GUIDERS["cfg_zero_star"]
    c = torch.tensor([[1.0, 2.0], [0.5, -1.0], [0.2, 0.4]])
    u = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.1, 0.2]])  # the third row: c = 2 u
    x = torch.zeros(3, 2)
    got, _ = g.combine(
        rows_of(g, "ddpm", x, c, u, torch.zeros(3, dtype=torch.long), {"weight": 3.0})
    )
    s = np.array([1.5 / 0.5, 0.5 / 1.0, 0.1 / 0.05])[:, None]
    want = s * u.numpy() + 3.0 * (c.numpy() - s * u.numpy())
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(got[2].numpy(), c[2].numpy(), rtol=1e-5)  # c along u: s* u = c
    zeroed, _ = g.combine(
        rows_of(g, "ddpm", x, c, u, torch.zeros(3, dtype=torch.long), {"weight": 3.0, "zero": 1})
    )
    assert torch.equal(zeroed, torch.zeros(3, 2))


def test_cfg_zero_star_zeroes_its_first_steps(conditional_model):
    """With eps = 0 a deterministic DDIM step keeps y = x / sqrt(ab): x_1 = x_0 sqrt(ab'/ab)."""
    m = conditional_model
    plan = make_plan(
        m,
        SampleSpec(
            "cfg_zero_star",
            3.0,
            steps=10,
            sampler="ddim",
            label=0,
            guider_params={"zero_init_steps": 1},
        ),
    )
    chunks = make_chunks(plan, 64, 0, m.device)
    advance(m, chunks)
    x0 = make_chunks(plan, 64, 0, m.device)[0].draw()
    ab = m.schedule_for(10).alpha_bar.double()
    np.testing.assert_allclose(
        chunks[0].x.numpy(), (x0.double() * (ab[-2] / ab[-1]).sqrt()).numpy(), rtol=1e-5
    )
    assert plan.guided_evaluations == 10  # every step runs the reference (w != 1)
    no_zero = run(m, "cfg_zero_star", 3.0, steps=10, guider_params={"zero_init_steps": 0})
    assert not np.array_equal(no_zero, run(m, "cfg_zero_star", 3.0, steps=10))


def weights(model, schedule, interval=None, scale=4.0):
    plan = make_plan(model, SampleSpec("cfg", scale, label=0, schedule=schedule, interval=interval))
    return np.array([row[plan.names["weight"]] for row in plan.stages][::-1])  # eval order


def test_weight_schedules(conditional_model):
    m = conditional_model
    sigma = (1 / m.schedule.alpha_bar.double() - 1).sqrt().flip(0).numpy()  # evaluation order
    np.testing.assert_array_equal(weights(m, "constant"), np.full(len(sigma), 4.0))
    inside = (sigma >= 0.3) & (sigma <= 3.0)
    np.testing.assert_array_equal(weights(m, "interval", (0.3, 3.0)), np.where(inside, 4.0, 1.0))
    np.testing.assert_array_equal(weights(m, None, (0.3, 3.0)), weights(m, "interval", (0.3, 3.0)))
    lin = weights(m, "linear")
    u = (sigma - sigma.min()) / (sigma.max() - sigma.min())
    np.testing.assert_allclose(lin, 1 + 3 * (1 - u), rtol=1e-6)  # 1 at the top, 4 at the bottom
    cos = weights(m, "cosine")
    np.testing.assert_allclose(cos, 1 + 3 * 0.5 * (1 + np.cos(math.pi * u)), rtol=1e-6)
    assert cos[0] == pytest.approx(1.0) and cos[-1] == pytest.approx(4.0)
    # a schedule over an interval is 1 outside it
    assert (weights(m, "linear", (0.3, 3.0))[~inside] == 1.0).all()
    # and fewer reference passes where the weight is 1
    plan = make_plan(m, SampleSpec("cfg", 4.0, label=0, schedule="linear"))
    assert plan.guided_evaluations == plan.evaluations - 1  # only the top's weight is 1


@pytest.mark.parametrize(
    ("variant", "kw", "field"),
    [
        ("apg", {"guider_params": {"momentum": 1.5}}, "guider_params.momentum"),
        ("apg", {"guider_params": {"momentum": math.nan}}, "guider_params.momentum"),
        ("apg", {"guider_params": {"norm_threshold": 0.0}}, "guider_params.norm_threshold"),
        ("apg", {"guider_params": {"parallel": -0.1}}, "guider_params.parallel"),
        ("cfg", {"guider_params": {"momentum": 0.1}}, "guider_params.momentum"),
        (
            "cfg_zero_star",
            {"guider_params": {"zero_init_steps": 1.5}},
            "guider_params.zero_init_steps",
        ),
        (
            "cfg_zero_star",
            {"guider_params": {"zero_init_steps": 100}},
            "guider_params.zero_init_steps",
        ),
        ("cfg", {"schedule": "exponential"}, "guidance_schedule"),
        ("cfg", {"schedule": "interval"}, "guidance_interval"),
        ("cfg", {"schedule": "linear", "interval": (3.0, 0.3)}, "guidance_interval"),
        ("cfg_plus_plus", {"schedule": "linear"}, "guidance_schedule"),
        ("cfg_plus_plus", {"sampler": "dpmpp_2m"}, "sampler"),
        ("cfg_plus_plus", {"scale": 2.0}, "scale"),
        ("baseline", {"schedule": "cosine"}, "guidance_schedule"),
    ],
)
def test_bad_guider_requests_name_their_field(conditional_model, variant, kw, field):
    with pytest.raises(RequestError) as e:
        make_plan(conditional_model, SampleSpec(variant, label=0, **kw))
    assert e.value.field == field and e.value.allowed


def test_new_guiders_batch_bit_for_bit_and_repeat_per_seed(conditional_model, guide_model):
    requests = [
        (SampleSpec("apg", 4.0, label=0), None),
        (SampleSpec("cfg_plus_plus", 0.05, label=1, sampler="ddim", steps=30), None),
        (SampleSpec("cfg_zero_star", 3.0, label=1, schedule="cosine"), None),
        (SampleSpec("cfg", 2.0, label=0, schedule="linear", interval=(0.2, 5.0)), None),
        (SampleSpec("apg", 2.0, label=1, guider_params={"momentum": 0.3}, sampler="heun"), None),
        (SampleSpec("autoguidance", 2.0, label=0), guide_model),
        (SampleSpec("baseline"), None),
    ]
    m = conditional_model
    alone = [
        sample(m, spec.__class__(**{**vars(spec), "n": 260, "seed": i}), guide).samples
        for i, (spec, guide) in enumerate(requests)
    ]
    together = [
        make_chunks(make_plan(m, spec, guide), 260, i, m.device)
        for i, (spec, guide) in enumerate(requests)
    ]
    chunks = [c for cs in together for c in cs]
    step = 0
    while live := [c for c in chunks if not c.done]:
        step += 1
        advance(
            m, live[::-1] if step % 2 else live[1:] if step % 3 == 0 and len(live) > 1 else live
        )
    for expected, cs in zip(alone, together, strict=True):
        np.testing.assert_array_equal(collect(cs), expected)
    again = sample(m, SampleSpec("apg", 4.0, n=260, seed=0, label=0)).samples
    np.testing.assert_array_equal(again, alone[0])


def test_a_guider_is_one_registered_record(conditional_model):
    """A guider written here, registered, runs batched with the shipped ones: the step never
    names a guider. This one halves cfg's guidance: eps_u + (1 + (w - 1) / 2) (eps_c - eps_u)."""

    def halved(rows: GuidedRows):
        u = rows.reference
        return u + (1 + (rows.column("weight") - 1) / 2) * (rows.eps - u), None

    base = GUIDERS["cfg"]
    toy = Guider(
        "test_halved_cfg",
        "cfg at half its weight, for the interface test",
        "cfg",
        3.0,
        base.scale_range,
        "w",
        combine=halved,
        reference=Reference.UNCONDITIONAL,
        weighted=True,
        columns=("weight",),
        plan_columns=base.plan_columns,
        takes=frozenset({"schedule"}),
        needs_class=True,
        conditional_model=True,
    )
    register(toy)
    try:
        m = conditional_model
        got = sample(m, SampleSpec("test_halved_cfg", 5.0, N, SEED, label=0, steps=10)).samples
        want = sample(m, SampleSpec("cfg", 3.0, N, SEED, label=0, steps=10)).samples
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        mixed = [
            make_chunks(make_plan(m, SampleSpec(v, s, label=0, steps=10)), 100, 1, m.device)
            for v, s in (("test_halved_cfg", 5.0), ("cfg", 3.0))
        ]
        for _ in range(10):
            advance(m, mixed[0] + mixed[1])
        np.testing.assert_allclose(collect(mixed[0]), collect(mixed[1]), rtol=1e-5, atol=1e-5)
    finally:
        del GUIDERS["test_halved_cfg"]
