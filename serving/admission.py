"""Admission of rank requests to the inference executor: by count AND by time.

A request is refused at once (503 + Retry-After) when

- ``LONGRANK_MAX_QUEUE`` requests are already queued or running in this process (count), or
- its expected wait for an inference slot is over ``LONGRANK_QUEUE_TIMEOUT_S`` (time): expected wait =
  (requests ahead of it − ½) ÷ slots × the recent service time (an exponential moving average of how long a
  request holds a slot; the running ones are half done on average).

and an admitted request that nevertheless waited longer than ``LONGRANK_QUEUE_TIMEOUT_S`` before a slot took it
is refused when the slot takes it (before any work), so that an accepted request's latency stays bounded by the
queue timeout plus its own service time even when the estimate was wrong (a burst, a slow request ahead).

Counting by requests alone let accepted requests wait 2.7 s at 3× overload (issue 11, D8): 16 admitted requests of
170 ms each queue for seconds on one slot. ``pending`` and the average are only touched on the event loop;
``check_wait`` runs in the executor thread and only reads the clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

EWMA_WEIGHT = 0.2  # weight of the newest service time in the average


class Overloaded(Exception):
    """Refused for overload: ``reason`` says which bound, ``retry_after_s`` what to send."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class Admission:
    slots: int  # concurrent inferences of this process
    max_queue: int  # LONGRANK_MAX_QUEUE
    queue_timeout_s: float  # LONGRANK_QUEUE_TIMEOUT_S
    pending: int = 0  # admitted and not finished (queued or running)
    service_s: float | None = None  # moving average of the time a request holds a slot

    def expected_wait_s(self) -> float:
        """How long a request admitted now would wait for a slot: it starts after ``pending - slots + 1``
        completions, which come every ``service / slots`` on average, the first sooner (the running requests are
        half done on average): ``(pending - slots + 0.5) × service / slots``."""
        ahead = self.pending - self.slots + 1  # completions it waits for
        if ahead <= 0 or self.service_s is None:
            return 0.0
        return (ahead - 0.5) * self.service_s / self.slots

    def admit(self) -> float:
        """Admit a request or raise Overloaded; returns its admission time (``time.perf_counter()``)."""
        if self.pending >= self.max_queue:
            raise Overloaded(f"{self.pending} rank requests are queued or running (limit {self.max_queue}, "
                             "LONGRANK_MAX_QUEUE); retry later")  # fmt: skip
        wait = self.expected_wait_s()
        if wait > self.queue_timeout_s:
            raise Overloaded(f"a slot would be free in about {wait * 1e3:.0f} ms, over the queue timeout of "
                             f"{self.queue_timeout_s * 1e3:.0f} ms (LONGRANK_QUEUE_TIMEOUT_S); retry later",
                             retry_after_s=max(1, math.ceil(wait)))  # fmt: skip
        self.pending += 1
        return time.perf_counter()

    def check_wait(self, admitted_at: float) -> float:
        """In the executor, when a slot takes the request: raise Overloaded when it waited too long; returns the
        start time."""
        now = time.perf_counter()
        waited = now - admitted_at
        if waited > self.queue_timeout_s:
            raise Overloaded(f"waited {waited * 1e3:.0f} ms for an inference slot, over the queue timeout of "
                             f"{self.queue_timeout_s * 1e3:.0f} ms (LONGRANK_QUEUE_TIMEOUT_S); retry later")
        return now

    def finish(self, service_s: float | None) -> None:
        """A request left the executor (``service_s``: how long it held a slot; None when it did no work)."""
        self.pending -= 1
        if service_s is not None:
            self.service_s = service_s if self.service_s is None else (
                (1 - EWMA_WEIGHT) * self.service_s + EWMA_WEIGHT * service_s)  # fmt: skip
