"""The bearer header's grammar (``core.security.bearer_secret``), shared by REST keys, the admin UI and agents."""

import pytest

from latfarm.services.core.security import bearer_secret, other_scheme


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("Bearer lf_x", "lf_x"),
        ("bearer  lf_x ", "lf_x"),
        ("BEARER lf_x", "lf_x"),
        ("", ""),
        ("Bearer", ""),
        ("Bearer  ", ""),
    ],
)
def test_bearer_secret_reads_the_secret_or_nothing(header, secret):
    assert bearer_secret(header) == secret and not other_scheme(header)


@pytest.mark.parametrize("header", ["Basic abc", "Token lf_x", "lf_x"])
def test_another_scheme_is_told_apart_and_gives_no_secret(header):
    assert other_scheme(header) and bearer_secret(header) == ""
