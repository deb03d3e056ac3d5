import math

import pytest
import torch

from service.core.schedule import ScheduleConfig, add_noise, make_schedule


def test_alpha_bar_matches_the_closed_form():
    s = make_schedule()
    betas = [1e-4 + (0.02 - 1e-4) * i / 99 for i in range(100)]
    expected = [math.prod(1 - b for b in betas[: i + 1]) for i in range(100)]
    torch.testing.assert_close(s.alpha_bar, torch.tensor(expected, dtype=torch.float32))
    assert (
        abs(s.alpha_bar[99].item() - 0.364) < 1e-3
    )  # docs/DESIGN.md#2-schedules: never reaches N(0, I)
    assert s.num_steps == s.num_timesteps == 100
    torch.testing.assert_close(s.timesteps, torch.arange(100))


def test_posterior_coefficients():
    s = make_schedule()
    b = torch.linspace(1e-4, 0.02, 100, dtype=torch.float64)
    ab = torch.cumprod(1 - b, 0)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])
    torch.testing.assert_close(
        s.posterior_mean_coef1.double(), b * ab_prev.sqrt() / (1 - ab), rtol=1e-5, atol=1e-7
    )
    assert s.posterior_std[0] == 0 and (s.posterior_std[1:] > 0).all()
    var = b[5] * (1 - ab_prev[5]) / (1 - ab[5])
    assert abs(s.posterior_std[5].item() ** 2 - var.item()) < 1e-8


def test_add_noise_is_the_forward_process():
    s = make_schedule()
    x0, eps, t = torch.ones(3, 2), torch.zeros(3, 2), torch.tensor([0, 50, 99])
    torch.testing.assert_close(add_noise(s, x0, eps, t)[:, 0], s.alpha_bar[t].sqrt())


def test_respacing_keeps_alpha_bar_at_the_kept_steps():
    full = make_schedule()
    short = make_schedule(ScheduleConfig(), steps=20)
    assert short.num_steps == 20 and short.timesteps[0] == 0 and short.timesteps[-1] == 99
    torch.testing.assert_close(short.alpha_bar, full.alpha_bar[short.timesteps])
    assert make_schedule(ScheduleConfig(), steps=1).timesteps.tolist() == [99]
    with pytest.raises(ValueError, match=r"steps must be in \[1, 100\]"):
        make_schedule(ScheduleConfig(), steps=101)


def test_cosine_schedule_reaches_noise():
    s = make_schedule(ScheduleConfig(kind="cosine"))
    assert s.alpha_bar[-1] < 1e-3 and s.alpha_bar[0] > 0.99
    with pytest.raises(ValueError, match="unknown schedule kind"):
        make_schedule(ScheduleConfig(kind="sigmoid"))


def test_logsnr_schedule_is_geometric_near_the_data():
    s = make_schedule(ScheduleConfig(kind="logsnr", sigma_min=0.002, alpha_bar_end=0.005))
    sigma = s.sqrt_one_minus_alpha_bar.double()  # computed in float64, stored in float32
    assert abs(sigma[0].item() - 0.002) < 1e-5 and abs(s.alpha_bar[-1].item() - 0.005) < 1e-4
    ratios = sigma[1:10] / sigma[:9]
    assert torch.allclose(ratios, ratios[0].expand(9), rtol=1e-3)  # constant factor per step
    assert (s.betas > 0).all() and (s.posterior_std[1:] > 0).all()
