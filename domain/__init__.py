"""The pure domain core: training load, body composition, labs, correlation, alert rules.

Nothing here imports Kafka, faust or InfluxDB; it is plain Python over plain data."""
