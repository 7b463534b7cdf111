"""Topic and storage contracts: event shapes (versioned), Kafka topics, InfluxDB series."""
