"""Whole-server admission against cases with known answers (no clock: `now` is given)."""

from __future__ import annotations

import pytest

from service.serving.admission import SAFETY, Admission, Cost, Overloaded, TooLong

A, B = 0, 1  # two models' keys


def test_work_that_fits_every_deadline_is_admitted_until_it_does_not():
    a = Admission()
    a.admit(A, 30.0, deadline_s=100, now=0)
    a.admit(B, 40.0, deadline_s=100, now=0)  # 70 <= 0.8 * 100, across models
    with pytest.raises(Overloaded) as e:
        a.admit(A, 20.0, deadline_s=100, now=0)  # 90 > 80
    # the newcomer fits once 10 s of the 70 ahead have run: 90 - 10 <= 0.8 * 100; refused
    # clients are spread over [10, 20] s so that they do not all come back at once
    assert 10 <= e.value.retry_after_s <= 20
    assert a.work_ahead_s == pytest.approx(70.0)


def test_a_newcomer_may_not_push_an_earlier_request_past_its_deadline():
    """Under fair sharing a later request slows the earlier ones: their slack counts too."""
    a = Admission()
    a.admit(A, 10.0, deadline_s=20, now=0)
    with pytest.raises(Overloaded):
        a.admit(A, 10.0, deadline_s=600, now=0)  # 20 s of work > 0.8 * the first one's 20 s
    a.admit(A, 5.0, deadline_s=600, now=0)  # 15 <= 16


def test_charged_work_and_released_tickets_make_room():
    a = Admission()
    t1 = a.admit(A, 60.0, deadline_s=100, now=0)
    with pytest.raises(Overloaded):
        a.admit(A, 30.0, deadline_s=100, now=0)
    a.charge(A, [(t1, 20.0)], predicted=20.0, seconds=20.0)  # ran as predicted
    a.admit(A, 20.0, deadline_s=100, now=20)  # 40 + 20 <= 0.8 * 80 (the first one's slack)
    a.release(t1)
    assert a.work_ahead_s == pytest.approx(20.0)


def test_slow_steps_make_the_work_in_hand_slower_too():
    a = Admission()
    a.admit(A, 10.0, deadline_s=100, now=0)
    a.admit(B, 10.0, deadline_s=100, now=0)
    for _ in range(200):  # model A's steps take twice what its cost model says
        a.charge(A, [], predicted=1.0, seconds=2.0)
    assert a.work_ahead_s == pytest.approx(30.0, rel=1e-3)  # 10 * 2 + 10 * 1
    with pytest.raises(Overloaded):
        a.admit(A, 25.5, deadline_s=100, now=0)  # 30 + 51 > 80
    a.admit(B, 50.0, deadline_s=100, now=0)  # 30 + 50 <= 80: model B is not slower


def test_a_request_that_cannot_finish_alone_is_too_long_not_overloaded():
    with pytest.raises(TooLong, match="about 150.0 s .* at least 188 s; its deadline is 120 s"):
        Admission().admit(A, 150.0, deadline_s=120, now=0)
    # 90 s of work in a 100 s deadline would be refused even on an idle server: too long, not
    # a 503 that no retry could ever get past
    with pytest.raises(TooLong):
        Admission().admit(A, 90.0, deadline_s=100, now=0)


def test_a_ticket_past_its_deadline_does_not_block_admission():
    a = Admission()
    a.admit(A, 1.0, deadline_s=10, now=0)  # the engine will reap it; until then ...
    a.admit(B, 5.0, deadline_s=100, now=50)  # ... it must not refuse everyone


def test_admission_off_takes_everything_and_still_counts_it():
    a = Admission(enabled=False)
    a.admit(A, 150.0, deadline_s=120, now=0)
    a.admit(A, 150.0, deadline_s=120, now=0)
    assert a.work_ahead_s == pytest.approx(300.0)


def test_request_cost_counts_rows_steps_and_per_step_overhead():
    cost = Cost(baseline=1e-6, guided=3e-6, step=1e-3)
    assert cost.request(4096, 100, guided=False, rows_per_step=4096) == pytest.approx(0.5096)
    assert cost.request(8192, 100, guided=True, rows_per_step=4096) == pytest.approx(2.6576)
    assert SAFETY < 1
