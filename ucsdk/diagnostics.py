"""What a node's process holds right now: open file descriptors, threads, trio tasks, memory.

A read-only diagnostic for leak hunting (``bench/soak.py`` watches it over time). The
figures come from ``/proc/self`` on Linux; elsewhere ``fds`` and ``rss_bytes`` are ``-1``.
They are the whole process's: every :class:`ucsdk.Node` of a process shares one event loop
and one set of threads, so nodes of one process report the same figures.

Example:
    >>> from ucsdk import Node
    >>> with Node.development(enable_mdns=False) as node:
    ...     usage = node.resources()
    >>> usage.fds > 0, usage.threads >= 2, usage.tasks > 0, usage.rss_mb > 0
    (True, True, True, True)
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass

import trio

__all__ = ["ResourceUsage", "count_trio_tasks", "process_resources", "trio_task_names"]


@dataclass(frozen=True)
class ResourceUsage:
    """One reading: ``fds`` open file descriptors, ``threads`` OS threads, ``tasks`` trio
    tasks alive on the node's event loop, ``rss_bytes`` resident memory; with
    ``detail=True``, ``task_names`` holds how many tasks run each function, most first."""

    fds: int
    threads: int
    tasks: int
    rss_bytes: int
    task_names: tuple[tuple[str, int], ...] = ()

    @property
    def rss_mb(self) -> float:
        """Resident memory in MiB."""
        return self.rss_bytes / (1024 * 1024)


def trio_task_names() -> Counter[str]:
    """Tasks alive in the calling trio run by name, the root task included (call it on
    the loop)."""
    names: Counter[str] = Counter()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        names[task.name] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


def count_trio_tasks() -> int:
    """How many tasks are alive in the calling trio run (call it on the loop)."""
    return sum(trio_task_names().values())


def process_resources(tasks: int | Counter[str]) -> ResourceUsage:
    """This process's fds, threads and memory, with ``tasks`` counted by the caller (a
    count, or a :func:`trio_task_names` counter to keep the names too)."""
    names: tuple[tuple[str, int], ...] = ()
    if isinstance(tasks, Counter):
        names = tuple(tasks.most_common())
        tasks = sum(tasks.values())
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    threads = threading.active_count()
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
                    break
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        rss = -1
    return ResourceUsage(fds=fds, threads=threads, tasks=tasks, rss_bytes=rss, task_names=names)
