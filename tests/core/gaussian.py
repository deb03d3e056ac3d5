"""A model whose answer is known: an energy network with its learned part zeroed, so
E(x, t) = -|x|^2 / (2 v_t), the exact log-density (up to a constant) of N(0, DATA_STD^2 I) data."""

from __future__ import annotations

import torch

from service.core.model import ReadyModel, make_ready
from service.core.network import Denoiser
from service.core.schedule import make_schedule
from service.worker.recipes import get_recipe
from service.worker.train import network_config


def gaussian_energy_model() -> ReadyModel:
    recipe = get_recipe("improved")
    torch.manual_seed(0)
    network = Denoiser(network_config(recipe, "energy"))
    with torch.no_grad():
        network.output.weight.zero_()
        network.output.bias.zero_()
    manifest = {"dataset": "moons", "training": {"objective": "energy"}, "id": "gaussian"}
    return make_ready("gaussian-energy", network, make_schedule(recipe.schedule), manifest)
