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

Best effort throughout: any failure is logged and the worker joins as it
would without an instance id.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

logger = logging.getLogger(__name__)

RECORD_TTL_S = 30 * 86_400
"""A record outlives a worker that was killed and never came back (a
replaced pod): it expires after 30 days without an assignment."""


def instance_name(template: str) -> str:
    """``template`` with ``{hostname}`` replaced by this host's name (a pod's
    name in Kubernetes, a container's in Compose)."""
    return template.replace("{hostname}", socket.gethostname())


def member_id(consumer: Any) -> str | None:
    """The member id ``consumer`` has in its group now (None before it joined,
    or with an aiokafka that keeps it elsewhere)."""
    found = getattr(getattr(consumer, "_coordinator", None), "member_id", None)
    return found if isinstance(found, str) and found else None


class Membership:
    """The member id of one instance of ``group``, kept at ``key`` in Redis."""

    def __init__(self, client: Any, key: str, group: str, *, timeout_s: float = 5.0) -> None:
        self.client = client
        self.key = key
        self.group = group
        self.timeout_s = timeout_s
        self._recording: set[asyncio.Task[None]] = set()

    async def _redis(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), self.timeout_s)

    async def leave_for_previous(self, consumer: Any) -> str | None:
        """Send ``LeaveGroup`` for the member id this instance last recorded;
        the broker's answer (``"left"``, or the error's name, e.g.
        ``UnknownMemberIdError`` when its session had expired already), None
        when there was nothing to do or it could not be sent."""
        try:
            previous = await self._redis(self.client.get, self.key)
        except Exception as exc:  # Redis down: join as usual
            logger.warning("could not read the previous member id (%s): joining without leaving for it", exc)
            return None
        if not previous:
            return None
        member = previous.decode() if isinstance(previous, bytes) else str(previous)
        if member == member_id(consumer):
            return None
        try:
            answer = await asyncio.wait_for(_leave(consumer, self.group, member), self.timeout_s)
        except Exception as exc:  # best effort
            logger.warning("could not leave group %s for the previous member %s: %r", self.group, member, exc)
            return None
        logger.info("group %s, previous member %s (this instance's killed process): %s", self.group, member, answer)
        return answer

    def record(self, member: str | None) -> None:
        """Record ``member`` in the background (the rebalance does not wait
        for Redis)."""
        if not member:
            return
        task = asyncio.ensure_future(self._record(member))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(self, member: str) -> None:
        try:
            await self._redis(self.client.set, self.key, member, ex=RECORD_TTL_S)
        except Exception as exc:  # the next assignment records again
            logger.warning("could not record member id %s: %s", member, exc)

    async def forget(self) -> None:
        """Delete the record (a clean stop: aiokafka leaves the group itself)."""
        for task in list(self._recording):
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self._redis(self.client.delete, self.key)
        except Exception as exc:  # it expires anyway
            logger.warning("could not delete the member record %s: %s", self.key, exc)


async def _leave(consumer: Any, group: str, member_id: str) -> str:
    """One ``LeaveGroup`` for ``member_id`` through ``consumer``'s group
    coordinator connection (aiokafka has no public call for another member)."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.group import LeaveGroupRequest

    coordinator = consumer._coordinator
    await coordinator.ensure_coordinator_known()
    response = await coordinator._send_req(LeaveGroupRequest(group, member_id))
    code = int(getattr(response, "error_code", 0))
    return "left" if code == 0 else for_code(code).__name__
