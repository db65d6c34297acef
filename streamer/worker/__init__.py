"""The Kafka worker: a faust-streaming app whose event path reads the source
topics in batches with aiokafka and applies them through streamer.engine."""
