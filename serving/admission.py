"""Admission of rank requests to the inference executor: by count AND by time.

A request is refused at once (503 + Retry-After) when

- ``LONGRANK_MAX_QUEUE`` requests are already queued or running in this process (count), or
- its expected wait for an inference slot is over ``LONGRANK_QUEUE_TIMEOUT_S`` (time).

The expected wait: the newcomer starts after ``pending − slots + 1`` completions. The first come when the running
requests end — each at a cautious service time after it started (what is left of it, from the clock) — and each
slot then frees again every cautious service time. The cautious service time is estimated as TCP estimates a
round trip (RFC 6298): moving averages of how long a request holds a slot and of its deviation from that average,
summed as ``mean + 4·deviation``. With the plain mean and running requests taken as half done, requests admitted
at 3× overload often waited past the timeout (the ones ahead ran long) and were refused only then, ~100 ms late.

An admitted request that nevertheless waited longer than ``LONGRANK_QUEUE_TIMEOUT_S`` before a slot took it is
refused when the slot takes it (before any work), so that an accepted request's latency stays bounded by the
queue timeout plus its own service time even when the estimate was wrong (a burst, a slow request ahead).

Counting by requests alone let accepted requests wait 2.7 s at 3× overload (issue 11, D8): 16 admitted requests of
170 ms each queue for seconds on one slot. ``pending`` and the averages are only touched on the event loop;
``check_wait`` runs in the executor thread, reads the clock and records when the request started (under a lock,
as ``finish`` removes it on the event loop).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple

EWMA_WEIGHT = 0.2  # weight of the newest service time in the average
DEVIATION_WEIGHT = 0.25  # weight of the newest |time − average| in the average deviation (RFC 6298's β)
DEVIATIONS = 4.0  # the cautious service time: average + this many average deviations (RFC 6298: K = 4)


class Ticket(NamedTuple):
    """An admitted request: a number unique in this process and its admission time (``time.perf_counter()``)."""

    number: int
    at: float


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
    deviation_s: float = 0.0  # moving average of |held time − service_s|
    running: dict[int, float] = field(default_factory=dict)  # ticket number -> start, of the running requests
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    numbers: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def expected_wait_s(self) -> float:
        """How long a request admitted now would wait for a slot (module docstring): it needs ``ahead = pending −
        slots + 1`` completions; slot j next frees at what is left of its running request's cautious service time
        (a slot whose request has not started yet: a whole one), then every cautious service time."""
        ahead = self.pending - self.slots + 1  # completions it waits for
        if ahead <= 0 or self.service_s is None:
            return 0.0
        service = self.cautious_service_s()
        clock = time.perf_counter()
        with self.lock:
            started = list(self.running.values())
        left = sorted(max(0.0, service - (clock - t)) for t in started[: self.slots])
        left += [service] * (self.slots - len(left))  # taken by a slot, not started yet
        rounds, slot = divmod(ahead - 1, self.slots)
        return left[slot] + rounds * service

    def cautious_service_s(self) -> float:
        """The service time a wait is estimated with: average + DEVIATIONS × average deviation (0 before any)."""
        return 0.0 if self.service_s is None else self.service_s + DEVIATIONS * self.deviation_s

    def admit(self) -> Ticket:
        """Admit a request or raise Overloaded; returns its ticket (for ``check_wait`` and ``finish``)."""
        if self.pending >= self.max_queue:
            raise Overloaded(f"{self.pending} rank requests are queued or running (limit {self.max_queue}, "
                             "LONGRANK_MAX_QUEUE); retry later")  # fmt: skip
        wait = self.expected_wait_s()
        if wait > self.queue_timeout_s:
            raise Overloaded(f"a slot would be free in about {wait * 1e3:.0f} ms, over the queue timeout of "
                             f"{self.queue_timeout_s * 1e3:.0f} ms (LONGRANK_QUEUE_TIMEOUT_S); retry later",
                             retry_after_s=max(1, math.ceil(wait)))  # fmt: skip
        self.pending += 1
        return Ticket(next(self.numbers), time.perf_counter())

    def check_wait(self, ticket: Ticket) -> float:
        """In the executor, when a slot takes the request: raise Overloaded when it waited too long; else record it
        as running and return the start time."""
        now = time.perf_counter()
        waited = now - ticket.at
        if waited > self.queue_timeout_s:
            raise Overloaded(f"waited {waited * 1e3:.0f} ms for an inference slot, over the queue timeout of "
                             f"{self.queue_timeout_s * 1e3:.0f} ms (LONGRANK_QUEUE_TIMEOUT_S); retry later")
        with self.lock:
            self.running[ticket.number] = now
        return now

    def finish(self, ticket: Ticket, service_s: float | None) -> None:
        """A request left the executor (``service_s``: how long it held a slot; None when it did no work)."""
        self.pending -= 1
        with self.lock:
            self.running.pop(ticket.number, None)
        if service_s is None:
            return
        if self.service_s is None:  # the first sample: no deviation seen yet
            self.service_s = service_s
            return
        off = abs(service_s - self.service_s)  # against the average before this sample, as RFC 6298 orders it
        self.deviation_s = (1 - DEVIATION_WEIGHT) * self.deviation_s + DEVIATION_WEIGHT * off
        self.service_s = (1 - EWMA_WEIGHT) * self.service_s + EWMA_WEIGHT * service_s
