"""The pure domain core: training load, body composition, labs, correlation, alert rules.

Nothing here imports Kafka, faust, InfluxDB or the event contract (`aromatrack.schemas`, which translates at the
boundary); it is plain Python over its own values (`events`)."""
