"""The gRPC side of the server: agents register, heartbeat, lease jobs, fetch artifacts and report results."""
