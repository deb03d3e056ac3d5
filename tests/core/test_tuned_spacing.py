"""Tuned spacings: the side file beside a model, verified before use (a torn, edited or foreign
one leaves the model served without it, saying why), its tables, and its interpolation."""

import json
import shutil
from dataclasses import replace

import pytest
import torch

from service.core.atomic import canonical_sha256
from service.core.errors import RequestError
from service.core.plan import make_plan
from service.core.schedule import full_alpha_bar
from service.core.spacing import TUNED, kept_timesteps
from service.core.spec import SampleSpec
from service.core.store import CheckpointError, CheckpointStore
from service.core.tuned_spacing import SPACING_FILE, TunedSpacing, parse

TABLES = {4: (10, 30, 60, 99), 8: (5, 12, 20, 31, 45, 62, 80, 99)}


@pytest.fixture
def store(tmp_path, tiny_store):
    shutil.copytree(tiny_store / "moons-plain", tmp_path / "moons-plain")
    return CheckpointStore(tmp_path)


def tuned_for(store: CheckpointStore) -> TunedSpacing:
    model_id = store.read_manifest("moons-plain")["id"]
    return TunedSpacing(model_id, "dpmpp_2m_sde", dict(TABLES), {"n": 10})


def log_sig(model) -> torch.Tensor:
    return (1 / full_alpha_bar(model.schedule.config) - 1).log() / 2


def test_a_saved_spacing_loads_with_its_model_and_runs(store):
    store.save_tuned_spacing("moons-plain", tuned_for(store))
    m = store.load_ready("moons-plain")
    assert m.tuned_spacing.tables == TABLES and m.tuned_spacing_error is None
    plan = make_plan(m, SampleSpec(steps=8, sampler="ddim", spacing=TUNED))
    assert sorted(plan.table[:, plan.names["t"]].long().tolist()) == list(TABLES[8])


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda raw: raw["tables"]["4"].__setitem__(0, 11), "sha256"),  # edited, not resealed
        (lambda raw: raw.__setitem__("format", 9), "format"),
    ],
)
def test_an_edited_side_file_is_not_used_and_says_why(store, edit, reason):
    path = store.save_tuned_spacing("moons-plain", tuned_for(store))
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    m = store.load_ready("moons-plain")
    assert m.tuned_spacing is None and reason in m.tuned_spacing_error
    assert str(path) in m.tuned_spacing_error
    with pytest.raises(RequestError) as e:
        make_plan(m, SampleSpec(steps=8, sampler="ddim", spacing=TUNED))
    assert e.value.field == "spacing" and reason in str(e.value)


def test_a_torn_side_file_is_not_used(store):
    path = store.save_tuned_spacing("moons-plain", tuned_for(store))
    path.write_bytes(path.read_bytes()[:40])
    m = store.load_ready("moons-plain")
    assert m.tuned_spacing is None and SPACING_FILE in m.tuned_spacing_error


def test_another_models_spacing_is_neither_saved_nor_used(store):
    foreign = TunedSpacing("0" * 64, "dpmpp_2m_sde", dict(TABLES))
    with pytest.raises(CheckpointError, match="another model"):
        store.save_tuned_spacing("moons-plain", foreign)
    (store.path("moons-plain") / SPACING_FILE).write_text(json.dumps(foreign.as_dict()))
    m = store.load_ready("moons-plain")
    assert m.tuned_spacing is None and "tuned for model 000000000000" in m.tuned_spacing_error


@pytest.mark.parametrize(
    "table",
    [[10, 30, 60], [10, 30, 60, 98], [30, 10, 60, 99], [10, 10, 60, 99], [True, 30, 60, 99]],
    ids=["short", "not-T-1-last", "not-rising", "repeated", "not-int"],
)
def test_a_table_that_is_not_a_run_is_refused(table):
    body = {"format": 1, "model_id": "m", "sampler": "ddim", "tables": {"4": table}}
    raw = {**body, "sha256": canonical_sha256(body)}  # sealed: only the table is wrong
    with pytest.raises(ValueError, match="4 steps"):
        parse(raw, "m", 100)


def test_a_model_without_one_names_how_to_get_one(plain_model):
    assert plain_model.tuned_spacing is None
    with pytest.raises(RequestError) as e:
        make_plan(plain_model, SampleSpec(steps=8, sampler="ddim", spacing=TUNED))
    assert "dgs tune-spacing" in str(e.value) and "karras" in e.value.allowed


def test_untuned_step_counts_interpolate_the_nearest_larger_table(store):
    """Align Your Steps' rule: the tuned log-sigmas over the normalised index, linearly, then the
    nearest trained timesteps; exact where a table exists. Known answer: a table evenly spaced in
    log sigma interpolates to the log-SNR spacing of the other step count."""
    m = store.load_ready("moons-plain")
    ab, ls = full_alpha_bar(m.schedule.config), log_sig(m)
    even = {12: tuple(kept_timesteps(ab, 12, "logsnr")), 4: TABLES[4]}
    m = replace(m, tuned_spacing=TunedSpacing(m.id, "ddim", even), _respaced={}, plans={})
    assert m.tuned_spacing.kept(4, ls) == list(TABLES[4])
    for steps in (5, 6, 9, 11):
        kept = m.tuned_spacing.kept(steps, ls)
        want = kept_timesteps(ab, steps, "logsnr")
        assert max(abs(a - b) for a, b in zip(kept, want, strict=True)) <= 1
    for steps in (2, 3, 13, 40):  # below the smallest table, above the largest
        kept = m.tuned_spacing.kept(steps, ls)
        assert len(kept) == steps == len(set(kept)) and kept == sorted(kept) and kept[-1] == 99
    assert make_plan(m, SampleSpec(steps=100, sampler="ddim", spacing=TUNED)).steps == 100
