"""Spacings: which of the model's timesteps a run of S < T steps keeps, each against the
formula it names, on both shipped schedules; the original respacing kept bit for bit."""

import math

import pytest
import torch

from service.core.errors import RequestError
from service.core.plan import make_plan
from service.core.schedule import ScheduleConfig, make_schedule
from service.core.spacing import KARRAS_RHO, SPACINGS, kept_timesteps
from service.core.spec import SampleSpec
from service.worker.recipes import get_recipe

PAPER = get_recipe("paper").schedule
FORMULAS = sorted(name for name, sp in SPACINGS.items() if not sp.per_model)
IMPROVED = get_recipe("improved").schedule


def log_sig(config: ScheduleConfig) -> torch.Tensor:
    ab = make_schedule(config).alpha_bar.double()
    return ((1 / ab - 1).log() / 2).double()


@pytest.mark.parametrize("name", FORMULAS)
@pytest.mark.parametrize("config", [PAPER, IMPROVED], ids=["paper", "improved"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 10, 37, 99, 100])
def test_every_spacing_keeps_distinct_timesteps_from_the_noise_to_the_data(name, config, steps):
    s = make_schedule(config, steps, name)
    kept = s.timesteps.tolist()
    assert len(kept) == steps == len(set(kept)) and kept == sorted(kept)
    assert kept[-1] == config.num_timesteps - 1
    if steps > 1:
        assert kept[0] == 0
    full = make_schedule(config)
    torch.testing.assert_close(s.alpha_bar, full.alpha_bar[s.timesteps])


def test_uniform_is_the_original_respacing_bit_for_bit():
    """What the service did before spacings were a choice: round(linspace(T - 1, 0, S))."""
    for steps in range(1, 101):
        old = sorted({round(v) for v in torch.linspace(99, 0, steps, dtype=torch.float64).tolist()})
        assert kept_timesteps(make_schedule(PAPER).alpha_bar, steps, "uniform") == old


@pytest.mark.parametrize("config", [PAPER, IMPROVED], ids=["paper", "improved"])
def test_karras_follows_the_rho_7_formula_to_the_nearest_trained_level(config):
    """sig_i = (sig_max^(1/7) + i/(S-1) (sig_min^(1/7) - sig_max^(1/7)))^7, each rounded to
    the trained timestep nearest in log sig: no kept level further from its target than half
    the gap to the next trained level."""
    ls = log_sig(config)
    steps = 8
    kept = kept_timesteps(make_schedule(config).alpha_bar, steps, "karras")
    lo, hi = math.exp(ls[0] / KARRAS_RHO), math.exp(ls[-1] / KARRAS_RHO)
    want = [KARRAS_RHO * math.log(hi + i / (steps - 1) * (lo - hi)) for i in range(steps)]
    got = ls[torch.tensor(kept[::-1])].tolist()
    gaps = (ls[1:] - ls[:-1]).max().item()
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) <= gaps / 2 + 1e-12
    # denser at low noise than evenly spaced sigma: more than half the steps below the middle
    mid = math.log((math.exp(ls[0]) + math.exp(ls[-1])) / 2)
    assert sum(v < mid for v in got) > steps / 2


def test_logsnr_is_even_in_log_sigma_and_is_uniform_on_the_log_snr_schedule():
    ls = log_sig(PAPER)
    kept = kept_timesteps(make_schedule(PAPER).alpha_bar, 6, "logsnr")
    steps_in_log = torch.diff(ls[torch.tensor(kept)])
    assert steps_in_log.std() / steps_in_log.mean() < 0.1  # even, to the trained grid
    assert kept != kept_timesteps(make_schedule(PAPER).alpha_bar, 6, "uniform")
    # the improved schedule is itself linear in log-SNR: evenly spaced t are evenly spaced
    # log sig, so the two spacings pick the same timesteps but for rounding ties (49.5)
    ab = make_schedule(IMPROVED).alpha_bar
    for steps in (5, 10, 20):
        logsnr, uniform = kept_timesteps(ab, steps, "logsnr"), kept_timesteps(ab, steps, "uniform")
        assert max(abs(a - b) for a, b in zip(logsnr, uniform, strict=True)) <= 1


def test_an_unknown_spacing_names_the_field_and_the_choices(plain_model):
    with pytest.raises(RequestError) as e:
        make_plan(plain_model, SampleSpec(steps=10, sampler="ddpm", spacing="cosine"))
    assert e.value.field == "spacing" and "karras" in e.value.allowed


def test_a_plan_runs_on_the_spacing_it_names(plain_model):
    for name in FORMULAS:
        plan = make_plan(plain_model, SampleSpec(steps=7, sampler="ddim", spacing=name))
        want = kept_timesteps(plain_model.schedule.alpha_bar, 7, name)
        assert plan.spacing == name
        assert sorted(plan.table[:, plan.names["t"]].long().tolist()) == want
