"""The served OpenAPI document against the real server: it states this server's limits and
every response, /docs needs no CDN, and schemathesis finds no 5xx and no undocumented reply.

The server runs with MAX_N = MAX_EVAL_N = 64 so that every generated request stays fast;
the served schema says so, which is what keeps schemathesis inside those limits. Every operation
in the schema is fuzzed; the pages outside it (/docs, /redoc and their assets) are checked by
the docs test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.schemas import SEED_MAX
from tests.live_server import live_server

TOKEN = "contract-test-token"
NPY = "application/x-npy"
LIMIT = 64
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and mode: about 25 s for both modes on 2 idle CPU cores. Many positive
# cases are refused by design: JSON Schema counts 10.0 as an integer, strict types do not.
EXAMPLES = {"POST /sample": 50, "POST /evaluate": 30}
NPY_EXAMPLES = 15
OTHER_EXAMPLES = 5
# A deadline the machine cannot meet is answered 504 by design (documented); valid cases get at
# least this much, so a slow or busy machine cannot turn one into a 5xx.
ROOMY_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def contract_server(api_store) -> Iterator[httpx.Client]:
    env = {"MAX_N": str(LIMIT), "MAX_EVAL_N": str(LIMIT), "ADMIN_TOKEN": TOKEN}
    # 10 held-out points behind each model's nll_bits (computed at its first /evaluate): the
    # same code path as 100, and no check here reads the figure
    env["HELDOUT_NLL_POINTS"] = "10"
    # the fuzzer's /loglik points lie anywhere within 100 of the origin: a low cap on each
    # point's evaluations keeps every solve to seconds (the same code path as the default)
    env["LOGLIK_MAX_EVALUATIONS"] = "500"
    # one torch thread: tiny batches gain nothing from two, and on a busy 2-core machine two
    # threads made the run 15x slower (spinning against the client and other processes)
    env["TORCH_THREADS"] = "1"
    # the fuzzer's valid sweeps run in the background: a few small cells each, one at a time
    env.update(SWEEP_MAX_CELLS="4", SWEEP_CONCURRENCY="1")
    with live_server(api_store, **env) as client:
        yield client


def request_schema(doc: dict, name: str) -> dict:
    return doc["components"]["schemas"][name]["properties"]


def bounds(spec: dict) -> dict:
    option = next(o for o in spec.get("anyOf", [spec]) if o.get("type") != "null")
    return {k: option[k] for k in ("minimum", "maximum") if k in option}


def test_the_schema_states_this_servers_limits(contract_server):
    doc = contract_server.get("/openapi.json").json()
    sample, evaluate = request_schema(doc, "SampleRequest"), request_schema(doc, "EvaluateRequest")
    assert bounds(sample["n"]) == {"minimum": 1, "maximum": LIMIT}
    assert bounds(evaluate["n"]) == {"minimum": 6, "maximum": LIMIT}
    for props in (sample, evaluate):
        assert bounds(props["steps"]) == {"minimum": 1, "maximum": 100}  # the tiny models' T
        assert bounds(props["deadline_s"])["maximum"] == 600  # MAX_DEADLINE_S
        assert bounds(props["seed"]) == {"minimum": 0, "maximum": SEED_MAX}  # exact, not 2**63
        model = next(o for o in props["model"]["anyOf"] if o["type"] == "string")
        assert model["minLength"] == 1 and re.fullmatch(model["pattern"], "moons-plain-improved")
        assert not re.fullmatch(model["pattern"], "")


def test_every_response_is_documented(contract_server):
    paths = contract_server.get("/openapi.json").json()["paths"]

    def codes(path, method):
        return set(paths[path][method]["responses"])

    for path in ("/sample", "/evaluate"):
        assert {"200", "400", "413", "415", "422", "503", "504"} <= codes(path, "post")
    assert "application/x-npy" in paths["/sample"]["post"]["responses"]["200"]["content"]
    assert {"200", "401", "404"} <= codes("/admin/reload", "post")
    assert {"200", "503"} <= codes("/readyz", "get")
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_no_asset_from_another_host(contract_server, page):
    html = contract_server.get(page).text
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\s\"']+", html)
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert len(assets) >= 2, html
    for url in assets:
        r = contract_server.get(url)
        assert r.status_code == 200 and len(r.content) > 1000, url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error_or_undocumented_reply(contract_server, mode):
    base = str(contract_server.base_url)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    statuses = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        inputs = (operation.body, operation.query, operation.headers, operation.path_parameters)
        if mode is GenerationMode.NEGATIVE and not any(len(i) for i in inputs):
            continue  # takes no input, so there is nothing to make invalid
        statuses[label] = run_operation(operation, mode, EXAMPLES.get(label, OTHER_EXAMPLES), base)
        if label == "POST /sample" and mode is GenerationMode.POSITIVE:
            # the .npy reply must be documented too (content type, status)
            statuses[f"{label} .npy"] = run_operation(operation, mode, NPY_EXAMPLES, base, NPY)
    print(mode, statuses)  # shown by pytest -s
    if mode is GenerationMode.POSITIVE:  # not only refusals were checked
        assert statuses["POST /sample"][200] and statuses["POST /evaluate"][200], statuses


def run_operation(
    operation, mode: GenerationMode, examples: int, base: str, accept: str | None = None
) -> Counter:
    seen = Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,  # the same cases on every run
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            deadline = case.body.get("deadline_s")
            if deadline is not None:
                case.body["deadline_s"] = max(deadline, ROOMY_DEADLINE_S)
        # positive cases carry the real token: /admin/reload runs its reload, not only its 401
        admin = mode is GenerationMode.POSITIVE and "admin" in operation.path
        headers = {"Authorization": f"Bearer {TOKEN}"} if admin else {}
        if accept:
            headers["Accept"] = accept
        r = case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=60)
        seen[r.status_code] += 1

    check()
    return seen
