"""latfarm.services: the central server (REST, gRPC, store, queue, predictions), its CLI and the Python client."""
