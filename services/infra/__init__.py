"""Infrastructure adapters: agent wake-ups, the prediction cache and Prometheus metrics."""
