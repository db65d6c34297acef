"""A restarted worker ends its previous process's group membership at once.

A worker killed without a goodbye (SIGKILL, the OOM killer, a crash) never
sends ``LeaveGroup``: the broker keeps the dead member in the group, with
its partitions, until its session expires (``session_timeout_ms``). Its
restarted process joins meanwhile and waits; on Tansu it may even join as a
follower of the dead leader and wait out a whole rebalance timeout more
(docs/performance.md, Restart).

With an instance id (``NORTHSTAR_INSTANCE_ID``: a name unique in the group
and the same across restarts, e.g. the pod name), a worker records its
member id in Redis at every assignment. Restarted, before it joins, it sends
the ``LeaveGroup`` the killed process could not. A clean stop sends its own
``LeaveGroup`` (aiokafka's) and deletes the record.

Best effort throughout: any failure is logged and counted, and the worker
joins as it would without an instance id. The Redis calls run in order on
one thread of their own (a late write cannot overtake a newer one or the
clean stop's delete).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamer.worker.threads import run_in

logger = logging.getLogger(__name__)

RECORD_TTL_S = 30 * 86_400
"""A record outlives a worker that was killed and never came back (a
replaced pod): it expires after 30 days without an assignment."""

_RETRIABLE = frozenset({"NotCoordinatorError", "CoordinatorLoadInProgressError", "CoordinatorNotAvailableError"})


def instance_name(template: str, hostname: str | None = None) -> str:
    """``template`` with ``{hostname}`` replaced by ``hostname`` (default:
    this host's name, a pod's in Kubernetes, a container's in Compose)."""
    if "{hostname}" not in template:
        return template
    return template.replace("{hostname}", hostname if hostname is not None else socket.gethostname())


def member_id(consumer: Any) -> str | None:
    """The member id ``consumer`` has in its group now (None before it joined,
    or with an aiokafka that keeps it elsewhere)."""
    found = getattr(getattr(consumer, "_coordinator", None), "member_id", None)
    return found if isinstance(found, str) and found else None


def is_foreign(previous: str | None, mine: set[str], left_for: str | None) -> bool:
    """Whether the member id a record held before this process overwrote it
    belongs to another live process: neither one of this process's own ids
    nor the killed process's it left for (two workers with one instance id)."""
    return previous is not None and previous not in mine and previous != left_for


class Membership:
    """The member id of one instance of ``group``, kept at ``key`` in Redis;
    ``count(outcome)`` is told how each leave went
    (``streamer.worker.metrics.LEAVE_OUTCOMES``)."""

    def __init__(
        self, client: Any, key: str, group: str, *, timeout_s: float = 5.0, count: Any = None,
    ) -> None:
        self.client = client
        self.key = key
        self.group = group
        self.timeout_s = timeout_s
        self.count = count if count is not None else (lambda outcome: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="northstar-membership")
        self._mine: set[str] = set()
        self._left_for: str | None = None
        self._recording: set[asyncio.Task[None]] = set()

    async def _redis(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await run_in(self._executor, lambda: fn(*args, **kwargs))

    async def leave_for_previous(self, consumer: Any) -> str | None:
        """Send ``LeaveGroup`` for the member id this instance last recorded;
        the broker's answer (``"left"``, or the error's name, e.g.
        ``UnknownMemberIdError`` from Apache Kafka when its session had
        expired already; Tansu answers "left" for any id), None when there
        was nothing to do or it could not be sent."""
        try:
            previous = await asyncio.wait_for(self._redis(self.client.get, self.key), self.timeout_s)
        except Exception as exc:  # Redis down: join as usual
            logger.warning("could not read the previous member id (%s): joining without leaving for it", exc)
            self.count("failed")
            return None
        if not previous:
            return None
        member = previous.decode() if isinstance(previous, bytes) else str(previous)
        self._left_for = member
        try:
            answer = await asyncio.wait_for(_leave(consumer, self.group, member), self.timeout_s)
        except Exception as exc:  # best effort
            logger.warning("could not leave group %s for the previous member %s: %r", self.group, member, exc)
            self.count("failed")
            return None
        logger.info("group %s, previous member %s (this instance's killed process): %s", self.group, member, answer)
        self.count("left" if answer == "left" else "refused")
        return answer

    def record(self, member: str | None) -> None:
        """Record ``member`` in the background (the rebalance does not wait
        for Redis)."""
        if not member:
            return
        self._mine.add(member)
        task = asyncio.create_task(self._record(member))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, member: str) -> None:
        try:
            found = await self._redis(self.client.set, self.key, member, ex=RECORD_TTL_S, get=True)
        except Exception as exc:  # the next assignment records again
            logger.warning("could not record member id %s: %s", member, exc)
            return
        previous = found.decode() if isinstance(found, bytes) else found
        if is_foreign(previous, self._mine, self._left_for):
            logger.error(
                "instance id record %s held member %s, which is not this worker's: another live worker has the "
                "same instance id, and the two make each other leave group %s at every restart; give each "
                "worker its own NORTHSTAR_INSTANCE_ID", self.key, previous, self.group,
            )

    async def forget(self) -> None:
        """Delete the record (a clean stop: aiokafka leaves the group itself);
        after every record still being written."""
        for task in list(self._recording):
            await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._redis(self.client.delete, self.key), self.timeout_s)
        except Exception as exc:  # it expires anyway
            logger.warning("could not delete the member record %s: %s", self.key, exc)
        self._executor.shutdown(wait=False)


async def _leave(consumer: Any, group: str, member: str) -> str:
    """One ``LeaveGroup`` for ``member`` through ``consumer``'s group
    coordinator connection (aiokafka has no public call for another member);
    once more after a coordinator moved."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.group import LeaveGroupRequest

    coordinator = consumer._coordinator
    answer = ""
    for _ in range(2):
        await coordinator.ensure_coordinator_known()
        response = await coordinator._send_req(LeaveGroupRequest(group, member))
        code = int(getattr(response, "error_code", 0))
        answer = "left" if code == 0 else for_code(code).__name__
        if answer not in _RETRIABLE:
            break
        coordinator.coordinator_dead()
    return answer
