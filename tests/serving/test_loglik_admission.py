"""The likelihood solver's admission against cases with known answers (no clock: `now` is
given; a cost model of 10 ms a call and nothing a row makes the arithmetic plain)."""

from __future__ import annotations

import pytest

from service.serving.admission import SAFETY, Overloaded, TooLong
from service.serving.loglik_admission import LoglikAdmission, SolveCost, expected_calls

PER_CALL = SolveCost(call=0.01, row=0.0)


def admission(**kw) -> LoglikAdmission:
    return LoglikAdmission(cost=PER_CALL, **kw)


def test_the_prediction_grows_with_the_points_and_the_cap_bounds_it():
    a = admission()
    one = a.predict_s("m", 1)
    # one point: its own evaluations
    assert one == pytest.approx(PER_CALL.call * expected_calls(1, 2_500))
    assert a.predict_s("m", 1_000) == pytest.approx(one * 1.9)  # the hardest of 1,000
    capped = admission(max_evaluations=100)
    assert capped.predict_s("m", 1_000) == pytest.approx(1.0)  # 100 calls


def test_a_solve_that_cannot_finish_behind_the_work_ahead_is_refused_with_its_wait():
    a = admission()
    own = a.predict_s("m", 1)
    first = a.admit("m", 1, deadline_s=own / SAFETY + 1, now=0)
    assert a.work_ahead_at(0) == pytest.approx(own)
    with pytest.raises(Overloaded) as e:
        a.admit("m", 1, deadline_s=own / SAFETY + 1, now=0)
    # it fits once the excess has run: ahead + own - SAFETY * deadline, spread over [1, 2] x
    excess = 2 * own - SAFETY * (own / SAFETY + 1)
    assert excess <= e.value.retry_after_s <= 2 * excess + 1
    assert "work ahead" in str(e.value)
    a.release(first)
    a.admit("m", 1, deadline_s=own / SAFETY + 1, now=0)  # released: room again


def test_a_solve_too_long_for_its_deadline_alone_is_told_the_deadline_it_needs():
    a = admission()
    own = a.predict_s("m", 1)
    with pytest.raises(TooLong) as e:
        a.admit("m", 1, deadline_s=own * SAFETY, now=0)
    assert e.value.needed_s == pytest.approx(own / SAFETY)
    assert "fewer points" in str(e.value)


def test_a_solve_that_may_not_be_refused_is_queued_and_counted():
    a = admission()
    own = a.predict_s("m", 1)
    a.admit("m", 1, deadline_s=1.0, refuse=False, now=0)  # far too short: taken all the same
    a.admit("m", 1, deadline_s=None, refuse=False, now=0)
    assert a.work_ahead_at(0) == pytest.approx(2 * own)


def test_a_running_solve_counts_its_prediction_less_its_time_then_until_its_deadline():
    a = admission()
    own = a.predict_s("m", 1)
    ticket = a.admit("m", 1, deadline_s=10 * own, now=0)
    a.start(ticket, now=0)
    assert a.work_ahead_at(own / 4) == pytest.approx(own * 3 / 4)
    # past its prediction it is guessed to run as long again, never past its deadline
    assert a.work_ahead_at(2 * own) == pytest.approx(2 * own)
    assert a.work_ahead_at(9 * own) == pytest.approx(own)
    assert a.work_ahead_at(11 * own) == 0


def test_finished_solves_teach_the_evaluations_a_point_takes_and_the_speed():
    a = admission()
    before = a.predict_s("m", 10)
    ticket = a.admit("m", 10, deadline_s=None, now=0)
    calls = expected_calls(10, 5_000)  # twice the evaluations a point was thought to take
    for _ in range(30):  # run twice as fast as the cost model says: the scale halves
        a.learn(ticket, round(calls), 10 * 5_000, seconds=PER_CALL.call * calls / 2)
    assert a.predict_s("m", 10) == pytest.approx(before, rel=0.02)  # 2x the work, 2x faster
    assert a.predict_s("other", 10) == pytest.approx(before / 2, rel=0.02)  # its own shape


def test_a_far_point_in_a_solve_does_not_make_later_solves_look_expensive():
    a = admission()
    before = a.predict_s("m", 200)
    ticket = a.admit("m", 3, deadline_s=None, now=0)
    # two typical points and a far one of 22,000 evaluations, at the cost model's own speed
    calls, evaluations = 22_000, 2 * 2_500 + 22_000
    a.learn(ticket, calls, evaluations, PER_CALL.call * calls, typical=2_500)
    assert a.predict_s("m", 200) == pytest.approx(before)
    a.learn(ticket, calls, evaluations, PER_CALL.call * calls)  # the mean: 9,000 a point
    assert a.predict_s("m", 200) > 1.5 * before


def test_admission_off_takes_everything():
    a = admission(enabled=False)
    own = a.predict_s("m", 1)
    for _ in range(3):
        a.admit("m", 1, deadline_s=own / 10, now=0)
    assert a.work_ahead_at(0) == pytest.approx(3 * own)
