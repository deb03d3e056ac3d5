"""Prior Guidance (Karczewski et al. 2025): the initial latent x_T scaled to the q-quantile (the
scale) of its norm's chi distribution, x_T <- x_T chi.ppf(q, 2) / |x_T|, then a deterministic
ODE sampler unchanged. No network pass of its own: eps is the model's."""

from __future__ import annotations

from service.core import density_guidance as dg
from service.core.guiders.base import Guider
from service.core.guiders.density import QUANTILE_SCALE
from service.core.guiders.registry import register

register(
    Guider(
        "prior",
        "Prior Guidance: the initial latent scaled to the q-quantile (the scale) of its norm's "
        "chi distribution, then a deterministic ODE sampler (ddim eta 0, heun, dpmpp_2m) "
        "unchanged.",
        "prior",
        0.5,
        QUANTILE_SCALE,
        "0 (the latent's norm is set)",
        samplers=("heun", "ddim", "dpmpp_2m"),
        deterministic_sampler=True,
        start_norm=dg.chi2_norm_quantile,
    )
)
