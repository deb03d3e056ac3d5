"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself").

    eps_w = eps_guide(x, c) + w (eps(x, c) - eps_guide(x, c)),

the guide a smaller, shorter-trained conditional model of the same schedule (`guide_model`;
the dataset's 'guide' recipe by default). NVlabs/edm2's toy_example.py takes the same lerp in
score space. The class is optional (the null class guides the unconditional model).
"""

from __future__ import annotations

from service.core.guiders.base import Guider, Reference
from service.core.guiders.cfg import W_RANGE, referenced_eps, weight
from service.core.guiders.registry import register

register(
    Guider(
        "autoguidance",
        "Autoguidance (Karras et al. 2024): eps_guide(x, c) + w (eps(x, c) - eps_guide(x, c)), the "
        "guide a smaller, shorter-trained conditional model (`guide_model`; default the dataset's "
        "'guide' recipe). `class` optional; `guidance_schedule` and `guidance_interval` as cfg's.",
        "autoguidance",
        2.0,
        W_RANGE,
        "0 (the scale is w)",
        combine=referenced_eps,
        reference=Reference.GUIDE,
        weighted=True,
        columns=("weight",),
        plan_columns=weight,
        takes=frozenset({"schedule", "guide_model"}),
        conditional_model=True,
        objective=lambda gradient: "conditional",
    )
)
