"""The REST API (FastAPI, ``/v1``): devices, jobs, measurements, predictions, keys, health and metrics."""

from latfarm.services.api.app import create_app

__all__ = ["create_app"]
