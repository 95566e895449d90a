"""The server's domain logic: job queue and leases, results, agent liveness, artifacts and their export,
predictions and device adaptation."""
