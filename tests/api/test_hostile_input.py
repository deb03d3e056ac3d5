"""Input the service must refuse cleanly, over real HTTP: bodies built to hurt (lone surrogates,
megabytes, thousands of fields), loose types, the wrong content type, and a MODEL_STORE that
does not exist. Every refusal is a small 4xx in the one error shape, never a 5xx."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from pydantic import ValidationError

from service.api.settings import Settings
from tests.live_server import free_port

JSON = {"content-type": "application/json"}
SMALL = 2_000  # bytes: an error reply never grows with the input


def errors(r, small: int = SMALL):
    assert r.status_code == 422, r.text
    assert len(r.content) < small, len(r.content)
    return {tuple(e["loc"])[-1]: e for e in r.json()["detail"]}


def raw_request(server, head: bytes, body_parts: list[bytes] = ()) -> tuple[int, bytes]:
    """Send a request by hand (a body may stop half way) and read the reply to its end."""
    url = server.base_url
    with socket.create_connection((url.host, url.port), timeout=10) as s:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_a_lone_surrogate_is_a_422_not_a_500(server):
    for raw in (
        r'{"dataset": "\ud800"}',
        r'{"dataset": "moons", "model": "\udfff"}',
        r'{"dataset": "moons", "\ud800": 1}',
    ):
        r = server.post("/sample", content=raw, headers=JSON)
        assert r.status_code == 422, (raw, r.status_code, r.text)
        assert r.json()["detail"]


def test_a_declared_50mb_body_is_refused_before_it_is_read(server):
    head = (
        b"POST /sample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n"
    )
    status, body = raw_request(server, head)  # the body never comes: none is waited for
    assert status == 413 and b"MAX_BODY_BYTES" in body and len(body) < SMALL


def test_a_chunked_body_is_counted_as_it_streams(server):
    head = (
        b"POST /sample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    # 64 KiB and one byte, and no end chunk: refused once the count passes the cap (sending
    # more than the server reads would make its close a reset that hides the reply)
    status, body = raw_request(server, head, [chunk] * 4 + [b"1\r\n \r\n"])
    assert status == 413 and b"MAX_BODY_BYTES" in body


def test_a_50mb_body_sent_whole_gets_a_small_413(server):
    r = server.post("/sample", content=b'{"dataset": "' + b"x" * 50_000_000 + b'"}', headers=JSON)
    assert r.status_code == 413 and len(r.content) < SMALL


def test_a_body_under_the_cap_is_served(server):
    padded = '{"dataset": "moons", "n": 4' + " " * 60_000 + "}"
    assert server.post("/sample", content=padded, headers=JSON).status_code == 200


def test_long_strings_and_numbers_are_not_echoed(server):
    assert "dataset" in errors(server.post("/sample", json={"dataset": "x" * 60_000}))
    err = errors(server.post("/sample", json={"dataset": "moons", "model": "m" * 60_000}))
    assert "input" not in err["model"] and "64" in err["model"]["allowed"]
    raw = '{"dataset": "moons", "seed": ' + "9" * 4000 + "}"
    assert "seed" in errors(server.post("/sample", content=raw, headers=JSON))
    # short scalars still come back, to show what was refused
    assert errors(server.post("/sample", json={"dataset": "mars"}))["dataset"]["input"] == "mars"


def test_unknown_fields_are_bounded_in_number_and_length(server):
    many = {"dataset": "moons", **{f"f{i}": 0 for i in range(5000)}}
    # 20 errors listed, each naming the ~25 known fields: bounded by the schema, not the input
    detail = errors(server.post("/sample", json=many), small=8_000)
    assert "more errors" in detail["body"]["msg"]
    long_name = "k" * 30_000
    err = errors(server.post("/sample", json={"dataset": "moons", long_name: 1}))
    (name,) = [k for k in err if isinstance(k, str) and k.startswith("kkk")]
    assert len(name) <= 64 and "known fields" in err[name]["allowed"]


@pytest.mark.parametrize(
    "field, value",
    [("n", True), ("n", "10"), ("n", 10.0), ("seed", "3"), ("steps", True), ("scale", "0.5")],
)
def test_numbers_are_strict(server, field, value):
    err = errors(server.post("/sample", json={"dataset": "moons", "n": 4, field: value}))
    assert field in err and "allowed" in err[field]


def test_a_float_field_takes_a_json_integer(server):
    body = {"dataset": "moons", "variant": "fixed", "scale": 1, "n": 4}
    r = server.post("/sample", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["scale"] == 1.0


def test_the_wrong_content_type_names_application_json(server):
    for ctype in ("text/plain", "application/x-www-form-urlencoded"):
        for path in ("/sample", "/evaluate"):
            r = server.post(path, content='{"dataset": "moons"}', headers={"content-type": ctype})
            assert r.status_code == 415, r.text
            assert "application/json" in r.json()["detail"]
    r = server.post("/sample", content='{"dataset": "moons", "n": 4}')  # no content type
    assert r.status_code == 415 and "none" in r.json()["detail"]
    r = server.post("/sample", content='{"dataset": "moons", "n": 4}', headers=JSON)
    assert r.status_code == 200, r.text


def test_a_missing_model_store_is_named_at_start_up(tmp_path):
    missing = tmp_path / "no-such-store"
    with pytest.raises(ValidationError, match="no-such-store.*does not exist"):
        Settings(model_store=missing)
    cmd = [sys.executable, "-m", "service.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*cmd, "--model-store", str(missing)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert str(missing) in done.stderr and "Traceback" not in done.stderr
