"""The paper's reported figures (Table 1 and section 6.2), to print beside ours."""

from __future__ import annotations

# Per-dataset baseline KL (bits) and the reference's eval loss (docs/DESIGN.md#7-metrics).
BASELINE_KL = {"circle": 0.34, "dino": 1.04, "line": 0.15, "moons": 0.10}
BASELINE_EVAL_LOSS = {"circle": 0.44, "dino": 0.665, "line": 0.80, "moons": 0.62}
WORST_GUIDED_KL = {"circle": 26.54, "dino": 26.76, "line": 18.80}

# The rows of our Table 1: the paper's Baseline and four guided methods, plus baseline sampling
# on the density model (the row the paper lacks). (objective of the model, variant)
GRID: tuple[tuple[str, str], ...] = (
    ("plain", "baseline"),
    ("density", "baseline"),
    ("density", "fixed"),
    ("density", "adaptive"),
    ("density", "smoothed"),
    ("density", "minimal"),
)

# Table 1: ranges over the four datasets, per method.
TABLE1 = {
    "baseline": {
        "kl": "0.10-1.04",
        "time_s": "0.12",
        "train_min": "33.4-34.2",
        "eval_loss": "0.44-0.80",
    },
    "fixed": {
        "kl": "18.80-28.28",
        "time_s": "0.29",
        "train_min": "36.1-37.2",
        "eval_loss": "37.56-62.02",
    },
    "adaptive": {
        "kl": "18.30-28.28",
        "time_s": "0.29",
        "train_min": "36.7-37.5",
        "eval_loss": "38.02-62.02",
    },
    "smoothed": {
        "kl": "16.40-22.41",
        "time_s": "0.30-0.49",
        "train_min": "37.3-38.2",
        "eval_loss": "3.73-6.51",
    },
    "minimal": {
        "kl": "16.20-23.18",
        "time_s": "0.29-0.31",
        "train_min": "36.5-37.5",
        "eval_loss": "1.02-1.35",
    },
}


def paper_cell(dataset: str, objective: str, variant: str) -> dict[str, str]:
    """The paper's figures for one cell of our grid; '-' where the paper has no such row."""
    if variant == "baseline" and objective == "density":
        return {"kl": "-", "time_s": "-", "train_min": "-", "eval_loss": "-"}
    row = dict(TABLE1[variant])
    if variant == "baseline":
        row["kl"] = f"{BASELINE_KL[dataset]:.2f}"
        row["eval_loss"] = f"{BASELINE_EVAL_LOSS[dataset]:.3g}"
    return row
