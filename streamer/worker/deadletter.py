"""Dead letters: every rejected record, unchanged, with the reason in headers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streamer.events.types import Rejected

REASON_HEADER = "northstar-reason"
DETAIL_HEADER = "northstar-detail"
SOURCE_HEADER = "northstar-source"


def headers(rejected: Rejected, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter: the reason, a human detail (capped), the origin."""
    return [
        (REASON_HEADER, rejected.reason.encode()),
        (DETAIL_HEADER, rejected.detail[:500].encode("utf-8", "replace")),
        (SOURCE_HEADER, f"{topic}:{partition}:{offset}".encode()),
    ]


class DeadLetters:
    """Writes rejected records to the dead-letter topic and waits for the
    acknowledgements before the caller commits the source offsets."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def send(
        self, topic: str, partition: int, items: Sequence[tuple[int, bytes | None, bytes, Rejected]]
    ) -> int:
        """``items``: (offset, key, raw value, rejection). Returns how many were sent."""
        futures = [
            await self.producer.send(self.topic, value=value, key=key, headers=headers(rej, topic, partition, off))
            for off, key, value, rej in items
        ]
        await asyncio.gather(*futures)
        return len(futures)
