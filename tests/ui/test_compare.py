"""The compare view (GET /compare) in a real browser, as the playground's test: Debian's headless
Chromium under chromium-driver against the shared live server. A browser that is missing or
fails to start fails the test (tests/ui/test_playground.py says why it never skips).

A small finished sweep is drawn with two pairs of axes: one point per config, the Pareto front
exactly the configs a computation from GET /sweeps/{id}/results' summary says, a click shows
that config's first seed's samples as /sample gives them, and the address brings it all back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.polling import wait_until
from tests.ui.test_playground import CHROMIUM, DRIVER, coloured_pixels, start_chromium

pytestmark = pytest.mark.browser

# One model (smoothed: moons-density) so that a fresh server warms one model, not two; both
# listed fields numeric, so they are axes too.
GRID = {"dataset": "moons", "variant": "smoothed", "scale": [0.5, 2.0], "steps": [5, 10]}
SWEEP = {
    "grid": {**GRID, "n": 300},
    "seeds": 2,
    "metrics": ["kl_bits", "precision", "recall", "evaluations"],
    "name": "compare view test",
}


def dominates(a: tuple[float, float], b: tuple[float, float], better: tuple[str, str]) -> bool:
    """a is at least as good as b on both axes and strictly better on one."""
    ge = [(u >= v) if d == "higher" else (u <= v) for u, v, d in zip(a, b, better, strict=True)]
    return all(ge) and a != b


def pareto(points: dict[int, tuple[float, float]], better: tuple[str, str]) -> set[int]:
    return {
        c for c, p in points.items() if not any(dominates(q, p, better) for q in points.values())
    }


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    driver = start_chromium(CHROMIUM, DRIVER)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def finished_sweep(server: httpx.Client) -> dict:
    """The sweep run to the end on the shared server; its results (GET /sweeps/{id}/results)."""
    created = server.post("/sweeps", json=SWEEP)
    assert created.status_code == 202, created.text
    sweep_id = created.json()["id"]

    def finished():
        status = server.get(f"/sweeps/{sweep_id}", params={"rows": "false"}).json()
        return status if status["state"] != "running" else None

    status = wait_until(finished, 120, "the sweep finishes", every=0.2)
    assert (status["state"], status["done"]) == ("done", status["cells"]), status
    return server.get(f"/sweeps/{sweep_id}/results").json()


def ready(driver) -> None:
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
    )


def choose(driver, name: str, value: str) -> None:
    Select(driver.find_element(By.ID, name)).select_by_value(value)


def chosen(driver, name: str) -> str:
    return Select(driver.find_element(By.ID, name)).first_selected_option.get_attribute("value")


def drawn(driver) -> dict[int, WebElement]:
    points = driver.find_elements(By.CSS_SELECTOR, "#plot g.pt")
    return {int(g.get_attribute("data-config")): g for g in points}


def check_plot(driver, summary: list[dict], x: str, y: str) -> set[int]:
    """One point per config with its intervals and its grid values; the front as computed here."""
    better = (chosen(driver, "x-better"), chosen(driver, "y-better"))
    points = drawn(driver)
    assert sorted(points) == sorted(r["config"] for r in summary)
    assert driver.find_element(By.ID, "plot").get_attribute("data-points") == str(len(summary))
    expected = pareto({r["config"]: (r[x], r[y]) for r in summary}, better)
    shown = {c for c, g in points.items() if g.get_attribute("data-front") == "1"}
    assert shown == expected, (x, y, better, summary)
    for r in summary:
        g = points[r["config"]]
        # grid columns have no interval; a metric has one from its two seeds
        bars = sum(r.get(f"{m}_low") is not None for m in (x, y))
        assert g.get_attribute("data-intervals") == str(bars)
        title = g.find_element(By.TAG_NAME, "title").get_attribute("textContent")
        assert title.startswith(f"scale={r['scale']:g}, steps={r['steps']}"), title
    return expected


def test_compare_draws_a_sweep_its_pareto_front_and_a_points_samples(
    server, chromium, finished_sweep
):
    driver, results = chromium, finished_sweep
    sweep_id, summary = results["sweep"]["id"], results["summary"]
    assert len(summary) == 4 and all(r["seeds_done"] == 2 for r in summary)
    driver.get(f"{server.base_url}/compare")
    ready(driver)
    choose(driver, "sweep", sweep_id)
    plot = driver.find_element(By.ID, "plot")
    WebDriverWait(driver, 10).until(lambda _: plot.get_attribute("data-sweep") == sweep_id)
    # the axes: the sweep's metrics and its numeric listed columns
    options = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "x")).options]
    assert options == [*SWEEP["metrics"], "scale", "steps"]

    # precision against recall, both higher-is-better by default
    choose(driver, "x", "recall")
    choose(driver, "y", "precision")
    assert (chosen(driver, "x-better"), chosen(driver, "y-better")) == ("higher", "higher")
    check_plot(driver, summary, "recall", "precision")
    # KL against NFE, both lower-is-better; then KL against the scale with higher scale better
    choose(driver, "x", "evaluations")
    choose(driver, "y", "kl_bits")
    assert (chosen(driver, "x-better"), chosen(driver, "y-better")) == ("lower", "lower")
    front = check_plot(driver, summary, "evaluations", "kl_bits")
    choose(driver, "x", "scale")
    choose(driver, "x-better", "higher")
    check_plot(driver, summary, "scale", "kl_bits")
    choose(driver, "x", "evaluations")
    assert chosen(driver, "x-better") == "lower"

    # a click on a front point: its first seed's samples beside the data
    config = min(front)
    circle = drawn(driver)[config].find_element(By.TAG_NAME, "circle")
    ActionChains(driver).move_to_element(circle).click().perform()
    cell = driver.find_element(By.ID, "cell")
    WebDriverWait(driver, 30).until(lambda _: cell.get_attribute("data-state") != "running")
    assert cell.get_attribute("data-state") == "done", cell.text
    clicked = int(cell.get_attribute("data-config"))  # the point on top where it was clicked
    row = next(r for r in results["rows"] if r["config"] == clicked)
    assert row["seed"] == 0
    body = {k: v for k, v in row["request"].items() if k not in ("k", "log_p_samples")}
    direct = server.post("/sample", json=body).json()
    finite = sum(all(v is not None for v in p) for p in direct["samples"])
    canvas = cell.find_element(By.TAG_NAME, "canvas")
    assert int(canvas.get_attribute("data-drawn")) == finite > 250
    assert coloured_pixels(driver, cell) > 200
    status = cell.find_element(By.CSS_SELECTOR, '[data-role="status"]').text
    assert status.startswith("seed 0: 300 samples, moons-density"), status
    assert len(driver.find_elements(By.CSS_SELECTOR, '#plot [data-role="selected"]')) == 1

    # the address keeps the sweep, the axes, which way they are better and the point
    address = driver.current_url
    for part in (f"sweep={sweep_id}", "x=evaluations", "xb=lower", "y=kl_bits", "yb=lower"):
        assert part in address, address
    driver.get("about:blank")
    driver.get(address)
    ready(driver)
    assert [chosen(driver, k) for k in ("sweep", "x", "x-better", "y", "y-better")] == [
        sweep_id,
        "evaluations",
        "lower",
        "kl_bits",
        "lower",
    ]
    cell = driver.find_element(By.ID, "cell")
    WebDriverWait(driver, 30).until(lambda _: cell.get_attribute("data-state") == "done")
    assert int(cell.get_attribute("data-config")) == clicked
    assert int(cell.find_element(By.TAG_NAME, "canvas").get_attribute("data-drawn")) == finite

    # the page's Pareto function on random ties and repeats, all four ways round
    rng = random.Random(4)
    points = [(rng.randint(0, 6), rng.randint(0, 6)) for _ in range(60)]
    for better in [(a, b) for a in ("lower", "higher") for b in ("lower", "higher")]:
        flags = driver.execute_script(
            "return dgsPareto(arguments[0], arguments[1])", points, better
        )
        got = {i for i, f in enumerate(flags) if f}
        assert got == pareto(dict(enumerate(points)), better), better
