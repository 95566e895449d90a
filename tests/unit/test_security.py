"""The bearer header's grammar (``core.security.bearer_secret``), shared by REST keys, the admin UI and agents."""

import pytest

from latfarm.services.core.security import BadAuthorization, bearer_secret


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
    assert bearer_secret(header) == secret


@pytest.mark.parametrize("header", ["Basic abc", "Token lf_x", "lf_x"])
def test_another_scheme_is_refused_with_a_reason(header):
    with pytest.raises(BadAuthorization, match="does not start with 'Bearer '"):
        bearer_secret(header)
