"""Routers, one per REST resource."""
