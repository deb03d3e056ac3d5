"""A Python client for the service: `Client` and `AsyncClient` on httpx, typed results.

    from service.client import Client
    with Client("http://127.0.0.1:8000") as c:
        result = c.sample("moons", variant="smoothed", n=5000, seed=0)
        print(result.samples.shape, result.meta.timing.total_s)
        print(c.evaluate("moons", variant="smoothed").kl_bits)

Samples come back as float32 (n, 2) numpy arrays (NaN where the sampler diverged); large
requests travel as .npy, not JSON. A 503 is retried after its Retry-After within a bounded
budget; every other error raises `ServiceError` with the API's own message (the field and its
allowed range for a 422). `timeout` becomes the request's `deadline_s`, so the server gives up
when the client would, and the read timeout is the deadline plus a grace period.

Imports nothing of the service: it needs only httpx, numpy and (for `progress=True`) tqdm.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, fields
from typing import Any

import httpx
import numpy as np

from service import sweep_client
from service.sweep_client import SweepResult

NPY = "application/x-npy"
NPY_FROM_N = 2000  # at and above this n, .npy transport: ~8x smaller than JSON, no parsing
GRACE_S = 10.0  # read timeout beyond the deadline: the server answers 504 by then


@dataclass(frozen=True)
class Timing:
    queue_s: float
    compute_s: float
    total_s: float


@dataclass(frozen=True)
class SampleMeta:
    n: int
    dataset: str
    variant: str
    scale: float
    seed: int
    steps: int
    sampler: str
    evaluations: int
    model: str
    model_name: str
    nonfinite: int
    timing: Timing
    gradient: str | None = None
    target_log_p: float | None = None
    priority: str | None = None  # the class it ran in (servers before priorities: None)
    label: int | None = None  # a conditional model's class (the JSON's "class")
    class_name: str | None = None
    guide_model: str | None = None
    guidance_interval: list | None = None
    guided_evaluations: int = 0


@dataclass(frozen=True)
class Samples:
    samples: np.ndarray  # (n, 2) float32; NaN for a row that diverged
    meta: SampleMeta
    log_p: np.ndarray | None = None  # variant density: each sample's tracked log-density


@dataclass(frozen=True)
class Evaluation:
    kl_bits: float | None
    nonfinite: int
    n: int
    dataset: str
    variant: str
    scale: float
    seed: int
    steps: int
    sampler: str
    evaluations: int
    model: str
    model_name: str
    timing: Timing
    precision: float | None = None
    recall: float | None = None
    mean_log_p: float | None = None
    nll_bits: float | None = None
    sampling_seconds: float | None = None
    seconds_per_sample: float | None = None
    class_metrics: dict | None = None  # a class on a conditional model: support, E[1/p(c|x)]...
    raw: dict | None = None  # the whole JSON body, for fields added later


@dataclass(frozen=True)
class Queued:
    rows_ahead: int
    n: int
    steps: int
    evaluations: int


@dataclass(frozen=True)
class Progress:
    evaluation: int
    evaluations: int
    fraction: float


@dataclass(frozen=True)
class Preview:
    evaluation: int
    t: int
    x_t: np.ndarray  # (rows, 2): the current noisy points
    x0: np.ndarray  # (rows, 2): the model's prediction of where they end


Event = Queued | Progress | Preview | Samples


class ServiceError(Exception):
    """A 4xx/5xx from the service, with its message as the API gave it."""

    def __init__(self, status: int, detail: Any, retry_after: float | None = None):
        self.status, self.detail, self.retry_after = status, detail, retry_after
        super().__init__(f"{status}: {describe(detail)}")


def describe(detail: Any) -> str:
    """The API's `detail` as one line: a 422's entries read "field: message (allowed: ...)"."""
    if isinstance(detail, list):
        parts = []
        for e in detail:
            if not isinstance(e, dict):
                parts.append(str(e))
                continue
            loc = ".".join(str(p) for p in e.get("loc", []) if p != "body")
            text = f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", ""))
            if e.get("allowed"):
                text += f" (allowed: {e['allowed']})"
            parts.append(text)
        return "; ".join(parts)
    return str(detail)


def _build(cls: type, data: dict) -> Any:
    names = {f.name for f in fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if "label" in names and "class" in data:  # `class` is a Python keyword
        kwargs["label"] = data["class"]
    if "timing" in names:
        kwargs["timing"] = Timing(**data["timing"])
    if "raw" in names:
        kwargs["raw"] = data
    return cls(**kwargs)


def _array(rows: list | None) -> np.ndarray | None:
    if rows is None:
        return None
    # JSON null (a non-finite coordinate) becomes NaN: numpy reads None as NaN for floats
    return np.asarray(rows, dtype=np.float32).reshape(-1, 2)


def samples_from_json(data: dict) -> Samples:
    log_p = data.get("log_p")
    return Samples(
        _array(data["samples"]),
        _build(SampleMeta, data),
        None if log_p is None else np.asarray(log_p, dtype=np.float64),
    )


def _samples_from_npy(response: httpx.Response) -> Samples:
    arr = np.load(io.BytesIO(response.content), allow_pickle=False)
    h = response.headers

    def get(name: str, kind: type = str) -> Any:
        value = h.get(f"x-{name}")
        return None if value is None else kind(value)

    meta = SampleMeta(
        n=get("n", int),
        dataset=get("dataset"),
        variant=get("variant"),
        scale=get("scale", float),
        seed=get("seed", int),
        steps=get("steps", int),
        sampler=get("sampler"),
        evaluations=get("evaluations", int),
        model=get("model"),
        model_name=get("model-name"),
        nonfinite=get("nonfinite", int),
        timing=Timing(get("queue-s", float), get("compute-s", float), get("total-s", float)),
        gradient=get("gradient"),
        target_log_p=get("target-log-p", float),
        priority=get("priority"),
        label=get("class", int),
        class_name=get("class-name"),
        guide_model=get("guide-model"),
        guidance_interval=(
            None
            if h.get("x-guidance-interval") is None
            else [float(v) for v in h["x-guidance-interval"].split(",")]
        ),
        guided_evaluations=get("guided-evaluations", int) or 0,
    )
    return Samples(arr, meta)


def _event(name: str, data: dict) -> Event:
    if name == "queued":
        return Queued(**data)
    if name == "progress":
        return Progress(**data)
    if name == "preview":
        return Preview(data["evaluation"], data["t"], _array(data["x_t"]), _array(data["x0"]))
    if name == "result":
        return samples_from_json(data)
    if name == "error":
        raise ServiceError(data["status"], data["detail"])
    raise ValueError(f"unknown event {name!r}")


class SSEParser:
    """text/event-stream lines in, (event, data) pairs out (the subset the service writes)."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.data: list[str] = []

    def feed(self, line: str) -> tuple[str, dict] | None:
        if line.startswith("event:"):
            self.name = line[6:].strip()
        elif line.startswith("data:"):
            self.data.append(line[5:].lstrip())
        elif not line and self.name is not None:
            done = (self.name, json.loads("\n".join(self.data)))
            self.name, self.data = None, []
            return done
        return None


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    parser = SSEParser()
    for line in lines:
        if (pair := parser.feed(line)) is not None:
            yield pair


class _Retry:
    """Honours Retry-After on 503 while attempts and the sleep budget last."""

    def __init__(self, retries: int, budget_s: float):
        self.left, self.budget = retries, budget_s

    def wait_for(self, response: httpx.Response) -> float | None:
        """Seconds to sleep before retrying `response`, or None to give up."""
        if response.status_code != 503 or self.left <= 0:
            return None
        try:
            wait = float(response.headers.get("retry-after", "1"))
        except ValueError:
            wait = 1.0
        if wait > self.budget:
            return None
        self.left -= 1
        self.budget -= wait
        return wait


def _error(response: httpx.Response) -> ServiceError:
    try:
        detail = response.json().get("detail", response.text[:500])
    except (ValueError, AttributeError):
        detail = response.text[:500]
    retry = response.headers.get("retry-after")
    return ServiceError(response.status_code, detail, float(retry) if retry else None)


def _body(dataset: str, params: dict, timeout: float | None) -> dict:
    """The request's JSON; `label=` is sent as "class" (a Python keyword)."""
    body = {"dataset": dataset, **{k: v for k, v in params.items() if v is not None}}
    if "label" in body:
        body["class"] = body.pop("label")
    if timeout is not None and "deadline_s" not in body:
        body["deadline_s"] = timeout
    return body


def _read_timeout(body: dict, default: float) -> httpx.Timeout:
    deadline = body.get("deadline_s")
    read = default if deadline is None else deadline + GRACE_S
    return httpx.Timeout(10.0, read=read)


class Client:
    """Blocking client. `timeout`: seconds a call may take, sent as deadline_s (None: the
    server's default deadline, read timeout `default_timeout`)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float | None = None,
        retries: int = 3,
        retry_budget_s: float = 30.0,
        default_timeout: float = 620.0,
        http: httpx.Client | None = None,
    ):
        self.timeout, self.retries, self.retry_budget_s = timeout, retries, retry_budget_s
        self.default_timeout = default_timeout
        self.http = http or httpx.Client(base_url=base_url)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _post(self, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        retry = _Retry(self.retries, self.retry_budget_s)
        timeout = _read_timeout(body, self.default_timeout)
        while True:
            r = self.http.post(path, json=body, headers=headers, timeout=timeout)
            wait = retry.wait_for(r)
            if wait is None:
                break
            time.sleep(wait)
        if r.status_code >= 400:
            raise _error(r)
        return r

    def _get(self, path: str) -> Any:
        r = self.http.get(path, timeout=30)
        if r.status_code >= 400:
            raise _error(r)
        return r.json()

    def sample(self, dataset: str, *, npy: bool | None = None, **params: Any) -> Samples:
        """POST /sample. `params`: the request's fields (variant, scale, n, seed, steps, ...)."""
        body = _body(dataset, params, self.timeout)
        if npy if npy is not None else body.get("n", 1000) >= NPY_FROM_N:
            return _samples_from_npy(self._post("/sample", body, {"accept": NPY}))
        return samples_from_json(self._post("/sample", body).json())

    def evaluate(self, dataset: str, **params: Any) -> Evaluation:
        body = _body(dataset, params, self.timeout)
        return _build(Evaluation, self._post("/evaluate", body).json())

    def stream(self, dataset: str, *, progress: bool = False, **params: Any) -> Iterator[Event]:
        """POST /sample/stream: yields Queued, Progress and Preview events, then Samples.
        `progress=True` also draws a tqdm bar. Closing the iterator early cancels the rows."""
        body = _body(dataset, params, self.timeout)
        retry = _Retry(self.retries, self.retry_budget_s)
        timeout = _read_timeout(body, self.default_timeout)
        while True:
            with self.http.stream("POST", "/sample/stream", json=body, timeout=timeout) as r:
                if r.status_code == 200:
                    yield from _with_bar(
                        (_event(n, d) for n, d in parse_sse(r.iter_lines())), progress
                    )
                    return
                r.read()
                wait = retry.wait_for(r)
                if wait is None:
                    raise _error(r)
            time.sleep(wait)

    def sweep(
        self,
        grid: dict,
        *,
        seeds: int | list[int] = 1,
        metrics: list[str] | None = None,
        name: str | None = None,
        progress: bool = True,
    ) -> SweepResult:
        """POST /sweeps, follow it (a tqdm bar with `progress`) and return its table:
        `.rows` (one a cell), `.summary` (one a config, means and 95% intervals over seeds),
        `.frame` (a pandas DataFrame where pandas is installed)."""
        return sweep_client.sweep(
            self, grid, seeds=seeds, metrics=metrics, name=name, progress=progress
        )

    def variants(self) -> list[dict]:
        return self._get("/variants")["variants"]

    def samplers(self) -> list[dict]:
        return self._get("/samplers")["samplers"]

    def models(self) -> list[dict]:
        return self._get("/models")["models"]


def _with_bar(events: Iterator[Event], show: bool) -> Iterator[Event]:
    if not show:
        yield from events
        return
    from tqdm import tqdm

    bar = None
    try:
        for e in events:
            if isinstance(e, Queued):
                bar = tqdm(total=e.evaluations, unit="eval", desc=f"n={e.n}")
            elif isinstance(e, Progress) and bar is not None:
                bar.update(e.evaluation - bar.n)
            elif isinstance(e, Samples) and bar is not None:
                bar.update(bar.total - bar.n)
            yield e
    finally:
        if bar is not None:
            bar.close()


class AsyncClient:
    """The same calls for asyncio code: `await c.sample(...)`, `async for e in c.stream(...)`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        timeout: float | None = None,
        retries: int = 3,
        retry_budget_s: float = 30.0,
        default_timeout: float = 620.0,
        http: httpx.AsyncClient | None = None,
    ):
        self.timeout, self.retries, self.retry_budget_s = timeout, retries, retry_budget_s
        self.default_timeout = default_timeout
        self.http = http or httpx.AsyncClient(base_url=base_url)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _post(self, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        retry = _Retry(self.retries, self.retry_budget_s)
        timeout = _read_timeout(body, self.default_timeout)
        while True:
            r = await self.http.post(path, json=body, headers=headers, timeout=timeout)
            wait = retry.wait_for(r)
            if wait is None:
                break
            await asyncio.sleep(wait)
        if r.status_code >= 400:
            raise _error(r)
        return r

    async def sample(self, dataset: str, *, npy: bool | None = None, **params: Any) -> Samples:
        body = _body(dataset, params, self.timeout)
        if npy if npy is not None else body.get("n", 1000) >= NPY_FROM_N:
            return _samples_from_npy(await self._post("/sample", body, {"accept": NPY}))
        return samples_from_json((await self._post("/sample", body)).json())

    async def evaluate(self, dataset: str, **params: Any) -> Evaluation:
        body = _body(dataset, params, self.timeout)
        return _build(Evaluation, (await self._post("/evaluate", body)).json())

    async def stream(self, dataset: str, **params: Any) -> AsyncIterator[Event]:
        body = _body(dataset, params, self.timeout)
        retry = _Retry(self.retries, self.retry_budget_s)
        timeout = _read_timeout(body, self.default_timeout)
        while True:
            async with self.http.stream("POST", "/sample/stream", json=body, timeout=timeout) as r:
                if r.status_code == 200:
                    parser = SSEParser()
                    async for line in r.aiter_lines():
                        if (pair := parser.feed(line)) is not None:
                            yield _event(*pair)
                    return
                await r.aread()
                wait = retry.wait_for(r)
                if wait is None:
                    raise _error(r)
            await asyncio.sleep(wait)
