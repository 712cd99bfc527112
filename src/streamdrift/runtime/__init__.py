"""The Kafka runtime: worker loop, checkpoints and their store, HTTP exporter, Kafka clients, settings."""
