"""Background loops of the server process, each a ``PeriodicWorker``: leases, adaptations, model export."""
