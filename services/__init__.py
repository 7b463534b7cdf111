"""Entry points: the CLI, the HTTP API and the alert notifier, thin shells around the domain core."""
