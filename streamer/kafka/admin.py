"""Topic administration with kafka-python (slow, but only used for admin)."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


def ensure_topic(
    bootstrap: str, name: str, partitions: int = 1, retention_ms: int | None = None, **client: Any
) -> bool:
    """Create ``name`` unless it exists; True when created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="northstar-admin", **client)
    try:
        if name in set(admin.list_topics()):
            return False
        configs = {"retention.ms": str(retention_ms)} if retention_ms else {}
        try:
            admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=configs)])
        except TopicAlreadyExistsError:
            return False
        logger.info("created topic %s with %d partitions", name, partitions)
        return True
    finally:
        admin.close()
