"""Lean records for the event path.

aiokafka builds a ``ConsumerRecord`` for every record it hands out: a
dataclass of eleven fields, the sizes of key and value, a tuple of the
headers. The event path reads three of them (offset, key, value), and in a
worker that building was ~12% of the event path's CPU (docs/performance.md,
proposal 19). :func:`lean` makes one consumer hand out the records as its
fetcher decoded them from the wire instead (aiokafka's ``DefaultRecord``:
``offset``, ``key``, ``value``, ``timestamp``, ``headers``); everything else
of the fetch (CRC checks, control batches, aborted transactions, positions)
is aiokafka's own, unchanged.

It hooks private attributes of aiokafka's fetcher, so it checks them first
and leaves the consumer as it is when they are not there (another aiokafka
version): the records are then ConsumerRecords, which have the same three
fields. It is for a consumer without deserializers (the event path reads
bytes).
"""

from __future__ import annotations

import collections
import logging
from typing import Any

logger = logging.getLogger(__name__)


def _wire(tp: Any, record: Any) -> Any:
    return record


class _Results(collections.OrderedDict):  # type: ignore[type-arg]
    """The fetcher's buffered results per partition: each new one, before it
    is read, hands out wire records."""

    def __setitem__(self, tp: Any, result: Any) -> None:
        records = getattr(result, "_partition_records", None)
        if records is not None:
            # looked up on the instance at every record: shadows the method
            records._consumer_record = _wire
        super().__setitem__(tp, result)


def lean(consumer: Any) -> bool:
    """Make the started ``consumer`` hand out wire records from its next
    fetch on; False (and the consumer unchanged) when it is not started, has
    a deserializer, or its aiokafka does not look as expected."""
    from aiokafka.consumer.fetcher import PartitionRecords

    fetcher: Any = getattr(consumer, "_fetcher", None)
    results = getattr(fetcher, "_records", None)
    if isinstance(results, _Results):
        return True
    if (
        type(results) is not collections.OrderedDict
        or not callable(getattr(PartitionRecords, "_consumer_record", None))
        or getattr(fetcher, "_key_deserializer", None) is not None
        or getattr(fetcher, "_value_deserializer", None) is not None
    ):
        logger.info("aiokafka's fetcher is not as expected: records stay ConsumerRecords")
        return False
    fetcher._records = _Results(results)
    return True
