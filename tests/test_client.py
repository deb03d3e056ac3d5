"""service.client's parsing, without a server (the live tests are tests/api/test_stream.py)."""

import numpy as np

from service.client import ServiceError, SSEParser, _event, describe, samples_from_json

META = {
    "n": 2, "dataset": "moons", "variant": "baseline", "scale": 0.0, "seed": 1, "steps": 3,
    "sampler": "ddpm", "evaluations": 3, "model": "m", "model_name": "moons-plain",
    "nonfinite": 1, "timing": {"queue_s": 0.0, "compute_s": 0.1, "total_s": 0.2},
}  # fmt: skip


def test_json_null_coordinates_become_nan():
    got = samples_from_json({"samples": [[0.5, None], [1.0, 2.0]], "log_p": None, **META})
    assert got.samples.dtype == np.float32 and got.samples.shape == (2, 2)
    assert np.isnan(got.samples[0, 1]) and got.samples[1, 1] == 2.0
    assert got.meta.nonfinite == 1 and got.meta.timing.total_s == 0.2 and got.log_p is None


def test_sse_parser_splits_events_and_joins_data_lines():
    parser = SSEParser()
    lines = ["event: progress", 'data: {"evaluation": 2,']
    lines += ['data: "evaluations": 3, "fraction": 0.6}']
    assert [parser.feed(line) for line in lines] == [None, None, None]
    name, data = parser.feed("")
    assert name == "progress" and data == {"evaluation": 2, "evaluations": 3, "fraction": 0.6}
    assert parser.feed("") is None  # a blank line with no event pending yields nothing


def test_an_error_event_raises_with_the_apis_field_and_range():
    detail = [{"loc": ["body", "n"], "msg": "too big", "allowed": "1 <= n <= 10"}]
    assert describe(detail) == "n: too big (allowed: 1 <= n <= 10)"
    try:
        _event("error", {"status": 422, "detail": detail})
    except ServiceError as e:
        assert e.status == 422 and "n: too big (allowed: 1 <= n <= 10)" in str(e)
    else:
        raise AssertionError("an error event must raise")
