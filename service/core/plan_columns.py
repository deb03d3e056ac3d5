"""The column layout of a plan's table, named in one place (core/plan.py builds the tables).

Per network evaluation a plan holds one row of WIDTH floats: the sampler's coefficients
(COEF, named by `Sampler.columns`), the network timestep, the class index, whether the
guider's reference pass runs (`active`), the sampler's re-noising ratio (core/samplers/base.py),
and up to GUIDER_SLOTS columns the guider names itself (`Guider.columns`: gamma and alpha, a
weight, a target...). Every plan of every guider and sampler has the same width, so a step
gathers the rows of any mix of plans from one tensor.
"""

from __future__ import annotations

from service.core.samplers import COEF_WIDTH

GUIDER_SLOTS = 4
COEF = slice(0, COEF_WIDTH)
T_COL, LABEL_COL, ACTIVE_COL, RENOISE_COL = range(COEF_WIDTH, COEF_WIDTH + 4)
GUIDER_COLS = slice(COEF_WIDTH + 4, COEF_WIDTH + 4 + GUIDER_SLOTS)
WIDTH = GUIDER_COLS.stop
COMMON = {"t": T_COL, "label": LABEL_COL, "active": ACTIVE_COL, "renoise": RENOISE_COL}


def column_names(sampler_columns: tuple[str, ...], guider_columns: tuple[str, ...]) -> dict:
    """Every named column of a plan of this sampler and guider -> its index."""
    if len(guider_columns) > GUIDER_SLOTS:
        raise ValueError(f"a guider has at most {GUIDER_SLOTS} plan columns")
    names = {name: i for i, name in enumerate(sampler_columns)} | COMMON
    return names | {name: GUIDER_COLS.start + i for i, name in enumerate(guider_columns)}
