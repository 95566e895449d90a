"""Arch rows are created once, also by transactions beside each other (``store.crud.ensure_archs``)."""

from __future__ import annotations

import threading

from latfarm.predictor import nb201
from latfarm.services.store.crud import ensure_archs


def test_an_arch_created_beside_another_transaction_is_its_row(sessions):
    """A batch or import creating an arch another open transaction is creating waits for it and takes its row's id
    (PostgreSQL: no key violation; SQLite: the write turn)."""
    arch = nb201.to_string(nb201.from_official_index(42))
    second: list[dict[str, int]] = []

    def create_beside() -> None:
        with sessions() as session, session.begin():
            second.append(ensure_archs(session, [arch]))

    with sessions() as first:
        first.begin()
        created = ensure_archs(first, [arch])
        beside = threading.Thread(target=create_beside)
        beside.start()
        beside.join(timeout=1.0)
        assert beside.is_alive()  # waiting for the first to end
        first.commit()
    beside.join(timeout=30.0)
    assert second == [created]
