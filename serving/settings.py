"""Service settings, read from the environment (prefix ``LONGRANK_``) once, in ``create_app`` or the CLI.

Every field is listed in the README. ``load_settings()`` turns a validation error into a message that names the
environment variable, the value and the rule, so a bad deployment fails at start, not at the first request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from retrieval.store import StoreOptions

ENV_PREFIX = "LONGRANK_"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each wrong variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    store_url: str = Field("sqlite:///./var/behaviors.db", description="memory://, sqlite:///PATH or redis://...")
    artifact: Path | None = Field(None, description="model artifact directory; none = no /v1/rank")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_token: SecretStr | None = Field(None, description="enables /v1/admin/*; unset = admin endpoints off")

    max_candidates: int = Field(2000, ge=1, le=100_000, description="candidates per /v1/rank request")
    max_events_per_batch: int = Field(10_000, ge=1, le=1_000_000, description="events per /v1/events request")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="request body size limit")
    max_behaviors_per_read: int = Field(10_000, ge=1, description="limit of GET /v1/users/{id}/behaviors")

    max_behaviors: int = Field(54_000, ge=1, le=1_000_000, description="per-user cap of the behaviour store")
    per_category: int = Field(200, ge=1, le=10_000, description="cap of each per-category list")
    dedupe_window_s: int = Field(7 * 86_400, ge=1, description="how long an event_id is remembered")
    actions: tuple[int, ...] = Field((0, 1, 2, 3), description="allowed action values, e.g. [0,1,2,3]")
    store_connect_timeout_s: float = Field(1.0, gt=0, le=60)
    store_timeout_s: float = Field(1.0, gt=0, le=60)
    store_read_budget_s: float = Field(0.05, gt=0, le=10, description="rank reads history within this, else degrades")

    torch_threads: int = Field(1, ge=1, le=256, description="torch/Faiss threads per inference call")
    inference_workers: int | None = Field(
        None, ge=1, le=256, description="concurrent inferences; default cores ÷ torch_threads"
    )
    max_queue: int = Field(32, ge=1, le=10_000, description="rank requests queued or running before 503 Retry-After")

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in {"memory", "sqlite", "redis", "rediss"}:
            raise ValueError("must start with memory://, sqlite:/// , redis:// or rediss://")
        return value

    @field_validator("actions")
    @classmethod
    def _actions_small(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 0 <= a <= 255 for a in value):
            raise ValueError("must be a non-empty list of integers in [0, 255]")
        return value

    def workers(self) -> int:
        """Concurrent inference calls: torch threads × workers ≤ cores unless set explicitly."""
        return self.inference_workers or max(1, (os.cpu_count() or 1) // self.torch_threads)

    def store_options(self, *, timeout_s: float | None = None) -> StoreOptions:
        return StoreOptions(
            max_behaviors=self.max_behaviors,
            per_category=self.per_category,
            dedupe_window_s=self.dedupe_window_s,
            connect_timeout_s=timeout_s or self.store_connect_timeout_s,
            command_timeout_s=timeout_s or self.store_timeout_s,
            actions=frozenset(self.actions),
        )


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
