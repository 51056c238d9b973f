"""Service settings, read from the environment (prefix ``LONGRANK_``) once, in ``create_app`` or the CLI.

Every field is listed in the README. ``load_settings()`` turns a validation error into a message that names the
environment variable, the value and the rule, so a bad deployment fails at start, not at the first request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.store import StoreOptions

ENV_PREFIX = "LONGRANK_"
MAX_QUEUE = 32  # rank requests admitted per machine (queued or running) by default; shared among the workers


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each wrong variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    store_url: str = Field("sqlite:///./var/behaviors.db", description="memory://, sqlite:///PATH or redis://...")
    artifact: Path | None = Field(None, description="model artifact directory; none = no /v1/rank")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: SecretStr | None = Field(None, description="enables /v1/admin/*; unset = admin endpoints off")
    data_token: SecretStr | None = Field(
        None, description="guards GET /v1/users/{id}/behaviors and DELETE /v1/users/{id} (the admin token works too)"
    )
    store_password: SecretStr | None = Field(
        None, description="Redis password when the store URL has none (keeps it off the command line)"
    )
    docs_enabled: bool = Field(True, description="serve /docs, /redoc and /openapi.json; false = off")
    ui_enabled: bool = Field(True, description="serve the explainer page at /ui; false = off")
    max_explain_candidates: int = Field(20, ge=1, le=2000, description="candidates per /v1/explain request")

    max_candidates: int = Field(2000, ge=1, le=100_000, description="candidates per /v1/rank request")
    max_events_per_batch: int = Field(10_000, ge=1, le=1_000_000, description="events per /v1/events request")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="request body size limit")
    body_timeout_s: float = Field(10.0, gt=0, le=600, description="a request body must arrive within this (else 408)")
    max_behaviors_per_read: int = Field(10_000, ge=1, description="limit of GET /v1/users/{id}/behaviors")

    max_behaviors: int = Field(54_000, ge=1, le=1_000_000, description="per-user cap of the behaviour store")
    per_category: int = Field(200, ge=1, le=10_000, description="cap of each per-category list")
    dedupe_window_s: int = Field(7 * 86_400, ge=1, description="how long an event_id is remembered")
    actions: tuple[int, ...] = Field((0, 1, 2, 3), description="allowed action values, e.g. [0,1,2,3]")
    store_connect_timeout_s: float = Field(1.0, gt=0, le=60)
    store_timeout_s: float = Field(1.0, gt=0, le=60)
    store_read_budget_s: float = Field(0.05, gt=0, le=10, description="rank reads history within this, else degrades")

    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=64,
        description="server processes (longrank serve --workers); default: the machine's cores",
    )  # fmt: skip
    torch_threads: int = Field(
        1, ge=1, le=256, description="torch/Faiss threads per inference call; default 1, or cores ÷ workers"
    )
    inference_workers: int | None = Field(
        None, ge=1, le=256, description="concurrent inferences per process; default (cores ÷ workers) ÷ torch_threads"
    )
    max_queue: int = Field(
        MAX_QUEUE, ge=1, le=10_000,
        description="rank requests queued or running per process before 503 Retry-After; default 32 ÷ workers",
    )  # fmt: skip
    queue_timeout_s: float = Field(
        0.1, gt=0, le=60,
        description="a rank request that would wait longer than this for an inference slot gets 503 Retry-After",
    )  # fmt: skip
    reload_timeout_s: float = Field(120.0, gt=0, le=3600, description="how long a reload waits for every worker")
    run_dir: Path | None = Field(None, description="set by longrank serve --workers N: the fleet's shared files")
    supervisor_pid: int | None = Field(None, ge=1, description="set by longrank serve --workers N: the master")

    # logs (serving/logs.py)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="log level")
    log_format: Literal["json", "text"] = Field("json", description="json: one JSON object a line; text: key=value")
    access_log: bool = Field(True, description="one log line per request; false = off")
    log_salt: SecretStr | None = Field(None, description="key of the user-id hash in logs (default: unkeyed)")

    # AGE exploration (models/age.py, serving/pipeline.py)
    explore_enabled: bool = Field(True, description="kill switch: false = never explore, even when a request asks")
    explore_fraction: float = Field(0.0, ge=0, le=1, description="share of requests explored when they do not say")
    explore_policy: Literal["dropout_ts", "ts", "ucb"] = Field(
        "dropout_ts", description="dropout_ts (MC-dropout Thompson sampling, the simulator's best exploring "
        "strategy), ts (AGE-TS) or ucb (AGE-UCB)")  # fmt: skip
    explore_lambda: float = Field(1.0, ge=0, le=1e6, description="AGE step size λ (the simulator's AGE-TS; "
                                  "the paper's 0.002 moved no slate)")  # fmt: skip
    explore_dropout: float = Field(0.15, ge=0, lt=1, description="MC-dropout rate of the sampled passes")
    explore_samples: int = Field(20, ge=1, le=1000, description="N dropout samples (ucb)")
    explore_pgd_steps: int = Field(1, ge=1, le=20, description="1 = FGM; more = PGD steps")
    explore_budget: int = Field(2, ge=0, le=10_000, description="at most this many explored items inside top_n")
    explore_max_impressions: int = Field(3000, ge=0, description="only items with fewer impressions are explored")
    explore_propensity_draws: int = Field(16, ge=0, le=1000, description="Monte-Carlo draws of the policy per "
                                          "explored response for the logged propensities (0 = none)")
    explore_log: str = Field("./var/exploration.jsonl", min_length=1,
                             description="exploration log: a JSONL file path, or redis://... for a Redis Stream")
    explore_log_stream: str = Field("longrank:exploration", min_length=1, description="Redis Stream key of the log")
    explore_log_maxlen: int = Field(1_000_000, ge=1, description="approximate cap of the Redis Stream (XADD MAXLEN ~)")

    @model_validator(mode="before")
    @classmethod
    def _thread_budget(cls, data: Any) -> Any:
        """With several server processes each gets its share of the machine unless set explicitly: of the cores
        (torch_threads = max(1, cores // workers)) and of the admission queue (max_queue = max(1, 32 // workers)),
        so that N workers admit no more waiting work than one does and overload still answers 503 quickly."""
        if not isinstance(data, dict):
            return data
        try:
            workers = int(data.get("workers") or os.cpu_count() or 1)
        except (TypeError, ValueError):
            return data  # the field validator reports the bad value
        if workers > 1:
            if data.get("torch_threads") is None:
                data = {**data, "torch_threads": cores_per_worker(workers)}
            if data.get("max_queue") is None:
                data = {**data, "max_queue": max(1, MAX_QUEUE // workers)}
        return data

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in {"memory", "sqlite", "redis", "rediss"}:
            raise ValueError("must start with memory://, sqlite:/// , redis:// or rediss://")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("actions")
    @classmethod
    def _actions_small(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 0 <= a <= 255 for a in value):
            raise ValueError("must be a non-empty list of integers in [0, 255]")
        return value

    def inference_slots(self) -> int:
        """Concurrent inference calls of one process: torch threads × slots × workers ≤ cores unless set."""
        return self.inference_workers or max(1, cores_per_worker(self.workers) // self.torch_threads)

    def store_options(self, *, timeout_s: float | None = None) -> StoreOptions:
        return StoreOptions(
            max_behaviors=self.max_behaviors,
            per_category=self.per_category,
            dedupe_window_s=self.dedupe_window_s,
            connect_timeout_s=timeout_s or self.store_connect_timeout_s,
            command_timeout_s=timeout_s or self.store_timeout_s,
            actions=frozenset(self.actions),
            retries=0 if timeout_s is not None else 1,  # inside a read budget: no second try
            password=self.store_password.get_secret_value() if self.store_password is not None else None,
        )


def cores_per_worker(workers: int) -> int:
    """This machine's cores shared among ``workers`` server processes (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + ".".join(str(p) for p in err["loc"]).upper()
            lines.append(f"{name}={err.get('input')!r}: {err['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
