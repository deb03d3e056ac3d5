"""What the paper's rule eps + gamma_t g does when g is the model's own score
(docs/DESIGN.md#6-guidance).

With g = grad_x log p_t = -eps / sigma_t, eps + gamma_t g = eps (1 - gamma_t / sigma_t): the
score is multiplied by c_t = 1 - gamma_t / sigma_t. 0 < c < 1 flattens (the score of p^c is
c grad log p), c > 1 sharpens toward the modes, and c < 0 reverses the pull toward the data.
This table gives c_t for each of the paper's variants at its default scale on both recipes'
schedules: no sampling, only the schedules and the gamma functions.

    python -m experiments.score_rescaling
"""

from __future__ import annotations

import torch

from service.core.guiders import GUIDERS
from service.core.schedule import make_schedule
from service.worker.recipes import RECIPES


def rows() -> list[dict]:
    out = []
    for recipe in RECIPES.values():
        s = make_schedule(recipe.schedule)
        T = s.num_timesteps
        t = torch.arange(T - 1, -1, -1)  # sampling order
        sigma = s.sqrt_one_minus_alpha_bar.double()[t]
        for v in GUIDERS.values():
            if v.family != "paper" or not v.needs_gradient:
                continue
            c = 1 - v.gamma(t, T, v.default_scale).double() / sigma
            out.append(
                {
                    "recipe": recipe.name,
                    "variant": v.name,
                    "scale": v.default_scale,
                    "c_first": float(c[0]),
                    "c_last": float(c[-1]),
                    "steps_reversed": int((c < 0).sum()),
                    "steps": T,
                    "sigma_last": float(sigma[-1]),
                }
            )
    return out


def render(rows: list[dict]) -> str:
    lines = [
        "| schedule (recipe) | variant | default scale | c at t = T-1 | c at t = 0 "
        "| steps with c < 0 (score reversed) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} (sigma_0 = {r['sigma_last']:.3f}) | {r['variant']} | {r['scale']:g} "
            f"| {r['c_first']:.3f} | {r['c_last']:.1f} | {r['steps_reversed']} of {r['steps']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    print(render(rows()))


if __name__ == "__main__":
    main()
