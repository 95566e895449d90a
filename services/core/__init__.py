"""Cross-cutting basics: settings, the UTC clock, the error types and API-key security."""
