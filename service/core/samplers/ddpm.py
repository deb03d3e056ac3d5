"""Ancestral DDPM (Ho et al. 2020): one evaluation and one noise draw per step."""

from __future__ import annotations

from service.core.samplers.base import Sampler, Stages, descending, one_per_step, pad_columns
from service.core.samplers.registry import register
from service.core.schedule import Schedule


def _ddpm_stages(s: Schedule, params: dict[str, float]) -> Stages:
    # the schedule's own float32 coefficients, so results stay bit-identical to the sampler
    # this service always had
    columns = [
        s.sqrt_inv_alpha_bar,
        s.sqrt_inv_alpha_bar_minus_one,
        s.posterior_mean_coef1,
        s.posterior_mean_coef2,
        s.posterior_std,
    ]
    table = pad_columns([c.cpu() for c in columns])
    t, table = descending(s.timesteps.cpu(), table)
    # the x_t term of the posterior mean, c2 x_t = c2 (sqrt(ab) x0 + sqrt(1 - ab) eps), is the
    # re-noising: c2 sqrt(1 - ab) against the whole eps coefficient -c1 sqrt(1/ab - 1)
    c = table.double()
    renoise = -(c[:, 3] * c[:, 1] / c[:, 0]) / (c[:, 2] * c[:, 1]).clamp_min(1e-30)
    return one_per_step(t, table, renoise)


def ddpm_update(x, eps, noise, coef, state):
    """x0_hat = x / sqrt(ab) - sqrt(1/ab - 1) eps; mean = c1 x0_hat + c2 x; + std z."""
    x0_hat = coef[:, 0:1] * x - coef[:, 1:2] * eps
    mean = coef[:, 2:3] * x0_hat + coef[:, 3:4] * x
    return mean + coef[:, 4:5] * noise, state


register(
    Sampler(
        "ddpm",
        "Ancestral DDPM (Ho et al. 2020) on the respaced schedule: the service's original sampler.",
        lambda steps: steps,
        "1",
        _ddpm_stages,
        ddpm_update,
        ("sqrt_inv_ab", "sqrt_inv_ab_minus_one", "posterior_c1", "posterior_c2", "std"),
        stochastic=True,
    )
)
