"""The overload storm: many clients, each request far bigger than the server can
take at once, every refused client waiting its Retry-After and trying again.

Measures what admission promises: the share of admitted requests that return 200 inside
their deadline, and the goodput (samples of successful requests per second) against the same
server's idle throughput (one client, one request at a time, same n).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson

from experiments.loadgen import JSON, _client


async def _one(client: aiohttp.ClientSession, body: dict, out: dict) -> float | None:
    """Sends `body` once; -> seconds to wait (Retry-After) if refused, else None."""
    start = time.perf_counter()
    try:
        async with client.post("/sample", data=orjson.dumps(body), headers=JSON) as r:
            await r.read()
            status, retry = r.status, r.headers.get("retry-after")
    except aiohttp.ClientError:
        # a pooled connection the server closed while the client slept its Retry-After
        # (uvicorn's keep-alive timeout is 5 s): the request never reached the server
        out["connection_errors"] += 1
        return 0.0
    seconds = time.perf_counter() - start
    if status == 503 and retry is not None:
        out["refused"] += 1
        out["refused_seconds"].append(seconds)
        return float(retry)
    out["admitted"] += 1
    if status == 200:
        out["ok"] += 1
        out["samples"] += body["n"]
        out["latencies"].append(seconds)
    else:
        out["failed"][str(status)] = out["failed"].get(str(status), 0) + 1
    return None


async def storm(
    base_url: str, clients: int, n: int, duration: float, models: tuple[str, ...]
) -> dict:
    """`clients` clients for `duration` s, each sending n-sample requests to the datasets of
    `models` in turn, waiting Retry-After after each 503; ends when every client is done."""
    out = {"admitted": 0, "ok": 0, "refused": 0, "samples": 0, "failed": {}}
    out |= {"latencies": [], "refused_seconds": [], "connection_errors": 0}

    async def client_loop(client: aiohttp.ClientSession, c: int) -> None:
        i = 0
        while time.perf_counter() - start < duration:
            dataset = models[(c + i) % len(models)]
            body = {"dataset": dataset, "n": n, "seed": c * 100_003 + i}
            wait = await _one(client, body, out)
            i += 1
            if wait is not None:
                await asyncio.sleep(min(wait, max(0.0, duration - (time.perf_counter() - start))))

    async with _client(base_url, clients) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client, c) for c in range(clients)))
        seconds = time.perf_counter() - start
    admitted = max(out["admitted"], 1)
    return {
        "clients": clients,
        "n": n,
        "seconds": seconds,
        "admitted": out["admitted"],
        "ok": out["ok"],
        "failed": out["failed"],
        "refused": out["refused"],
        "connection_errors": out["connection_errors"],
        "ok_fraction_of_admitted": out["ok"] / admitted,
        "max_refusal_s": max(out["refused_seconds"], default=0.0),
        "max_latency_s": max(out["latencies"], default=0.0),
        "goodput_samples_per_s": out["samples"] / seconds,
    }


async def idle_throughput(base_url: str, n: int, requests: int, dataset: str) -> float:
    """Samples per second of one client sending n-sample requests one after another."""
    out = {"admitted": 0, "ok": 0, "refused": 0, "samples": 0, "failed": {}}
    out |= {"latencies": [], "refused_seconds": [], "connection_errors": 0}
    async with _client(base_url, 1) as client:
        start = time.perf_counter()
        for i in range(requests):
            await _one(client, {"dataset": dataset, "n": n, "seed": i}, out)
        seconds = time.perf_counter() - start
    return out["samples"] / seconds
