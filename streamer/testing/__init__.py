"""Real local services for tests and the demo: Redis, Redis Cluster, Tansu (Kafka API),
Prometheus and Alertmanager, each a context manager that starts its own process on a
free 127.0.0.1 port, waits for a real readiness probe, and stops only what it started.

``services`` chooses between an external service, a container and a local binary.
"""

from streamer.testing.alertmanager import Alertmanager, alertmanager_binary
from streamer.testing.process import (
    ManagedProcess,
    MissingBinaryError,
    ServiceError,
    ServiceNotReadyError,
    free_port,
    wait_until,
)
from streamer.testing.prometheus import Prometheus, prometheus_binary, promtool_binary
from streamer.testing.proxy import TcpProxy
from streamer.testing.redis_server import (
    RedisCluster,
    RedisServer,
    redis_cli_binary,
    redis_server_binary,
)
from streamer.testing.tansu import TansuBroker, create_topic, kafka_ready, tansu_binary

__all__ = [
    "Alertmanager",
    "ManagedProcess",
    "MissingBinaryError",
    "Prometheus",
    "RedisCluster",
    "RedisServer",
    "ServiceError",
    "ServiceNotReadyError",
    "TansuBroker",
    "TcpProxy",
    "alertmanager_binary",
    "create_topic",
    "free_port",
    "kafka_ready",
    "prometheus_binary",
    "promtool_binary",
    "redis_cli_binary",
    "redis_server_binary",
    "tansu_binary",
    "wait_until",
]
