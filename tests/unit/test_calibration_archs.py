"""Which measured archs calibrate an adaptation (``measured_latencies(unchosen=True)``), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from latfarm.services.domain import batches
from latfarm.services.domain.predictions import measured_latencies
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Arch, Device, Job, Measurement, Source
from tests.queue_support import ARCHS, DEFAULT, make_device


def _row(device_id: int, arch: Arch, latency_ms: float, job: Job | None = None, **fields) -> Measurement:
    """A row of ``arch`` on the device under the default conditions: of ``job``, else imported."""
    return Measurement(
        device_id=device_id,
        arch_id=arch.id,
        job_id=job.id if job else None,
        source=Source.measured if job else Source.imported,
        dataset=None if job else "help-nb201",
        latency_ms=latency_ms,
        median_ms=latency_ms,
        conditions=DEFAULT.to_dict(),
        conditions_key=DEFAULT.key,
        **fields,
    )


def test_only_archs_no_one_chose_calibrate_each_with_its_best_latency(sessions):
    """An arch calibrates when one of its usable rows is imported or of a job drawn at random; its latency is still
    ``measured_latencies``' pick over all its rows (a later chosen stable row beats an unstable random one)."""
    device_id = make_device(sessions)
    random_then_chosen, chosen_only, quarantined_random, imported = ARCHS[:4]
    with transaction(sessions) as s:
        device = s.get_one(Device, device_id)
        drawn = batches.submit_batch(
            s, device, [random_then_chosen, quarantined_random], conditions=DEFAULT, drawn_at_random=True
        )
        chosen = batches.submit_batch(s, device, ARCHS[:4], conditions=DEFAULT)  # the imported arch's job never runs
        s.flush()
        job = {(row.batch_id, row.arch.arch): row for row in s.scalars(select(Job))}
        arch = {row.arch: row for row in s.scalars(select(Arch))}
        s.add_all(
            [
                _row(device_id, arch[random_then_chosen], 5.0, job[drawn.id, random_then_chosen], unstable=True),
                _row(device_id, arch[random_then_chosen], 4.0, job[chosen.id, random_then_chosen]),
                _row(device_id, arch[chosen_only], 3.0, job[chosen.id, chosen_only]),
                _row(device_id, arch[quarantined_random], 2.0, job[drawn.id, quarantined_random], quarantined=True),
                _row(device_id, arch[quarantined_random], 2.5, job[chosen.id, quarantined_random]),
                _row(device_id, arch[imported], 7.0),
            ]
        )
        key = {name: row.reference_index for name, row in arch.items()}  # NB201 archs are keyed by position
    with transaction(sessions) as s:
        every = measured_latencies(s, device_id, DEFAULT.key)
        calibrating = measured_latencies(s, device_id, DEFAULT.key, unchosen=True)
    assert set(every) == {key[name] for name in ARCHS[:4]}
    assert calibrating == {key[name]: every[key[name]] for name in (random_then_chosen, imported)}
    assert calibrating[key[random_then_chosen]].latency_ms == 4.0
    assert not calibrating[key[random_then_chosen]].unstable
