"""Kafka I/O shared by the worker, the producer tool and the simulator."""
