"""The service's one settings object, read from the environment (and `dgs serve` flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core.step import CHUNK_ROWS

# Hard ceilings of the request schemas; the settings may lower them, never raise them.
N_CEILING = 100_000
# No shipped model has T above 100, but a store may hold longer schedules (recipe search
# trains T = 200); the served OpenAPI narrows this to the largest T loaded (openapi_limits.py).
STEPS_CEILING = 1000
DEADLINE_CEILING = 3600.0  # MAX_DEADLINE_S (default 600) may be raised this far, no further
K_RANGE = (1, 50)
PREVIEW_ROWS_CEILING = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_store: Path = Path("model_store")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # CPU threads for the model's tensor work; None: torch's default (one per core)
    torch_threads: int | None = Field(None, ge=1, le=256)

    # Batching: "step" admits rows every denoising step; "request" starts whole requests
    # together after `batch_window_ms` and runs them to the end (the classic static batcher);
    # "off" runs one request at a time (for the benchmark's baseline).
    batching: Literal["step", "request", "off"] = "step"
    max_rows_per_step: int = Field(4096, ge=CHUNK_ROWS, le=1_000_000)
    # None: no cap beyond the round-robin share (see README "Batching")
    max_rows_per_request_step: int | None = Field(None, ge=CHUNK_ROWS)
    max_queued_rows: int = Field(400_000, ge=1)  # per model: rows accepted but not finished
    batch_window_ms: float = Field(5.0, ge=0, le=1000)
    # Step mode's priority classes (README "Batching"): "priority" runs interactive requests'
    # rows first and keeps batch requests at least `batch_min_share` of the step time while
    # they wait; "fair" shares every step round-robin among all requests, whatever their class.
    scheduling: Literal["priority", "fair"] = "priority"
    # A request's class when it names none: interactive up to this n, batch above; an
    # explicit "interactive" above it is refused (422), so a big job cannot jump the queue.
    interactive_max_n: int = Field(1024, ge=1, le=N_CEILING)
    batch_min_share: float = Field(0.1, gt=0, le=0.9)
    # The interactive class's order when its rows exceed a step: earliest deadline first, or
    # least remaining work (bench section "priorities" measures both)
    interactive_order: Literal["deadline", "remaining"] = "deadline"

    # Requests
    max_n: int = Field(N_CEILING, ge=1, le=N_CEILING)
    max_eval_n: int = Field(N_CEILING, ge=6, le=N_CEILING)
    default_deadline_s: float = Field(120.0, gt=0)
    max_deadline_s: float = Field(600.0, gt=0, le=DEADLINE_CEILING)
    # "deadline": take a request only if it and all work in hand can meet their deadlines
    # (README "Admission"); "off": take all that fits the queues, and let deadlines give 504
    admission: Literal["deadline", "off"] = "deadline"
    # Requests are small JSON objects (the largest legal one is under 1 KiB); the cap is checked
    # while the body streams in, so a 50 MB body costs 64 KiB of memory and a 413.
    # held-out points behind /evaluate's nll_bits, once per model (an ODE solve per point)
    heldout_nll_points: int = Field(500, ge=10, le=10_000)
    # The likelihood solve's cap on each point's evaluations (forward and two input-gradient
    # passes): a point that needs more is flagged finite false with the reason. The shipped
    # moons model's held-out points take ~2,400 (the hardest of 2,000: ~5,000), points 10 to
    # 50 from the data 7,000 to 24,000. README "Likelihood" gives the worst case it allows.
    loglik_max_evaluations: int = Field(25_000, ge=100, le=1_000_000)
    # /sample/stream: rows of x_t and x_0 in one preview event (each row is sent every preview)
    max_preview_rows: int = Field(512, ge=0, le=PREVIEW_ROWS_CEILING)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)

    # Sweeps (README "Sweeps"): stored in SQLite at DATA_DIR/sweeps.db, or in the database
    # DATABASE_URL names (postgresql+psycopg://user:password@host/db), which replicas share
    data_dir: Path = Path("data")
    database_url: SecretStr | None = None
    sweep_max_cells: int = Field(5000, ge=1, le=1_000_000)  # cells in one sweep
    sweep_max_active: int = Field(8, ge=1, le=1000)  # sweeps running at once
    sweep_max_work_s: float = Field(6 * 3600.0, gt=0)  # predicted seconds of all sweeps in hand
    # cells each replica runs at once: enough to fill a step with n = 10,000 rows each, few
    # enough that interactive requests are not refused for the sweeps' work ahead
    sweep_concurrency: int = Field(4, ge=1, le=256)
    sweep_lease_s: float = Field(30.0, ge=1, le=3600)  # a dead replica's cells wait this long
    replica_id: str | None = Field(None, max_length=80)  # default: host name and process id

    admin_token: SecretStr | None = None  # unset: /admin/* answers 404
    warmup: bool = True
    # Tests only, unset in production: every model's step cost as a JSON list [seconds a row,
    # seconds a guided row, seconds a step], instead of the one measured at warm-up, and each
    # step is charged at it instead of its measured time, so that admission and the priority
    # share decide the same on any machine under any load (service/serving/steptime.py)
    fixed_step_cost: tuple[float, float, float] | None = None

    @field_validator("model_store")
    @classmethod
    def _store_exists(cls, v: Path) -> Path:
        # a missing store would start a server that is never ready and says nowhere why
        if not v.is_dir():
            what = "is not a directory" if v.exists() else "does not exist"
            where = str(v) if v.is_absolute() else f"{v} ({v.resolve()})"
            raise ValueError(
                f"{where} {what}: set MODEL_STORE or --model-store to a folder of "
                "checkpoints (`dgs train --out` writes one)"
            )
        return v

    @field_validator("admin_token", "database_url", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, v: object) -> object:
        return None if v == "" else v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        cap = self.max_rows_per_request_step
        if cap is not None and cap > self.max_rows_per_step:
            raise ValueError(
                f"MAX_ROWS_PER_REQUEST_STEP ({cap}) exceeds MAX_ROWS_PER_STEP "
                f"({self.max_rows_per_step}): lower it or raise MAX_ROWS_PER_STEP"
            )
        if self.default_deadline_s > self.max_deadline_s:
            raise ValueError(
                f"DEFAULT_DEADLINE_S ({self.default_deadline_s}) exceeds MAX_DEADLINE_S "
                f"({self.max_deadline_s}): lower the default or raise the maximum"
            )
        if self.max_queued_rows < self.max_n:
            raise ValueError(
                f"MAX_QUEUED_ROWS ({self.max_queued_rows}) is below MAX_N ({self.max_n}): "
                "a request of the largest allowed n could never be queued"
            )
        return self

    @property
    def request_row_cap(self) -> int:
        return self.max_rows_per_request_step or self.max_rows_per_step


def explain(error: ValidationError) -> str:
    """A settings error on one line, each problem led by its variable (`MODEL_STORE: ...`);
    pydantic's own text spans several lines, which a start-up log or `dgs serve` should not."""
    parts = []
    for e in error.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        name = "_".join(str(p) for p in e["loc"]).upper()
        parts.append(f"{name}: {msg}" if name else msg)
    return "; ".join(parts)
