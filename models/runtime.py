"""Thread setup for torch and Faiss (both bring an OpenMP runtime) and numpy's BLAS: call ``set_threads`` once at
process start-up, before the first forward or search, so that threads × concurrent calls stay within the cores
(DESIGN.md §7). numpy's OpenBLAS otherwise starts a thread per core in every process: with two service workers on
two cores its spinning threads halved the load test's capacity (20 req/s at p99 197 ms and 2% 503, against p99 66
ms and none with one BLAS thread)."""

from __future__ import annotations

import contextlib

import torch


def set_threads(n: int, *, interop: int | None = None) -> None:
    """torch intra-op threads = ``n``; inter-op threads = ``interop`` (default ``n``) when still settable (torch
    allows it only before the first parallel work, later calls are skipped); Faiss OpenMP threads = ``n``; numpy's
    BLAS threads = ``n`` (threadpoolctl)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"threads={n!r} must be an integer >= 1")
    torch.set_num_threads(n)
    wanted = n if interop is None else interop
    if torch.get_num_interop_threads() != wanted:
        # torch refuses a second setting once parallel work started; the intra-op count above still applies
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(wanted)
    import faiss  # local: only processes that use the GSU pay for it

    faiss.omp_set_num_threads(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")  # process-wide from here on (not used as a context manager)
