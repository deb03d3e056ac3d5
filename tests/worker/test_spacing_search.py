"""The spacing search: coordinate descent that finds a known optimum, and `tune` on a real model
writing tables the store verifies and serves."""

import shutil

from service.core.schedule import full_alpha_bar
from service.core.spacing import kept_timesteps
from service.core.store import CheckpointStore
from service.worker.spacing_search import search, subdivided, trial_kl, tune


def test_search_finds_a_known_optimum_from_evenly_spaced_timesteps():
    """Objective: the distance to a target run; with every timestep a candidate, the search
    reaches it exactly, the top T - 1 never moving."""
    target = [3, 17, 18, 40, 77, 99]
    start = [0, 20, 40, 59, 79, 99]

    def distance(kept):
        return float(sum(abs(a - b) for a, b in zip(kept, target, strict=True)))

    found = search(distance, start, candidates=100, tolerance=0.5)
    assert list(found.kept) == target and found.kl_tuned == 0.0
    assert found.kl_start == distance(start) and found.trials > len(start)


def test_search_keeps_the_start_where_nothing_gains_more_than_the_tolerance():
    start = [0, 30, 60, 99]
    found = search(lambda kept: 1.0 - 1e-4 * kept[0], start, tolerance=0.01)
    assert list(found.kept) == start


def test_subdivided_keeps_every_step_and_splits_the_widest_gaps(plain_model):
    """On the model's own log-sigma grid: the smaller run's steps all stay, each added one lands
    at the middle of the then-widest gap (to the nearest timestep), and a run with no room left
    between neighbours still gets its count."""
    log_sig = ((1 / full_alpha_bar(plain_model.schedule.config) - 1).log() / 2).numpy()
    T = len(log_sig)
    kept = (5, 10, 30, T - 1)
    got = subdivided(plain_model, kept, 6)
    assert len(got) == 6 == len(set(got)) and got == sorted(got) and set(kept) <= set(got)
    t = list(kept)
    for _ in range(2):  # the rule written out: the widest gap's middle in log sigma
        a, b = max(zip(t, t[1:], strict=False), key=lambda g: log_sig[g[1]] - log_sig[g[0]])
        t = sorted(
            t
            + [min(range(a + 1, b), key=lambda i: abs(log_sig[i] - (log_sig[a] + log_sig[b]) / 2))]
        )
    assert got == t
    full = subdivided(plain_model, tuple(range(T - 3)) + (T - 1,), T)
    assert full == list(range(T))


def test_tune_writes_tables_the_store_serves(tmp_path, tiny_store):
    root = tmp_path / "store"
    shutil.copytree(tiny_store / "moons-plain", root / "moons-plain")
    store = CheckpointStore(root)
    model = store.load_ready("moons-plain")
    tuned = tune(model, "dpmpp_2m_sde", [3, 4], n=300)
    assert sorted(tuned.tables) == [3, 4] and tuned.model_id == model.id
    for steps, kept in tuned.tables.items():
        assert tuned.tuning["kl_tuned"][str(steps)] <= tuned.tuning["kl_start"][str(steps)]
        start = kept_timesteps(full_alpha_bar(model.schedule.config), steps, "uniform")
        params = tuned.tuning["sampler_params"]
        # the recorded KL is the trial's own (seed 1, the same n), reproducible
        kl = trial_kl(model, "dpmpp_2m_sde", params, list(kept), 300, 1)
        assert abs(kl - tuned.tuning["kl_tuned"][str(steps)]) < 1e-3
        assert len(start) == len(kept)
    store.save_tuned_spacing("moons-plain", tuned)
    assert store.load_ready("moons-plain").tuned_spacing == tuned
