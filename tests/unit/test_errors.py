"""One error hierarchy, one HTTP mapping, one gRPC translator, one CLI exit."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.exc import OperationalError

from latfarm.agents.errors import AgentError
from latfarm.services.api.errors import HTTP_STATUS, http_status
from latfarm.services.cli.errors import exit_on_error
from latfarm.services.core.errors import CODES, LatfarmError, NotFound
from latfarm.services.datasets import DatasetError
from latfarm.services.domain.adaptation import AdaptationRunning
from latfarm.services.domain.artifacts import ArtifactNotReproducible
from latfarm.services.domain.batches import QueueError
from latfarm.services.domain.network_export import ExportUnavailable
from latfarm.services.domain.predictions import NoEstimate
from latfarm.services.domain.results import ResultError
from latfarm.services.domain.samples import AdaptError
from latfarm.services.rpc.errors import GRPC_STATUS, translate_errors

DOMAIN_ERRORS = {
    QueueError: (422, grpc.StatusCode.INVALID_ARGUMENT),
    ResultError: (422, grpc.StatusCode.INVALID_ARGUMENT),
    AdaptError: (422, grpc.StatusCode.INVALID_ARGUMENT),
    DatasetError: (422, grpc.StatusCode.INVALID_ARGUMENT),
    AdaptationRunning: (409, grpc.StatusCode.ALREADY_EXISTS),
    NoEstimate: (409, grpc.StatusCode.FAILED_PRECONDITION),
    ExportUnavailable: (501, grpc.StatusCode.UNIMPLEMENTED),
    ArtifactNotReproducible: (500, grpc.StatusCode.INTERNAL),
}


def test_every_code_maps_to_an_http_and_a_grpc_status():
    assert set(HTTP_STATUS) == set(GRPC_STATUS) == set(CODES)
    assert all(400 <= status < 600 for status in HTTP_STATUS.values())
    assert grpc.StatusCode.OK not in GRPC_STATUS.values()


@pytest.mark.parametrize("error", DOMAIN_ERRORS, ids=lambda e: e.__name__)
def test_domain_errors_map_by_their_class_not_their_message(error):
    err = error("no telling words in this message")
    assert err.code in CODES and isinstance(err, LatfarmError)
    assert (http_status(err), GRPC_STATUS[err.code]) == DOMAIN_ERRORS[error]


def test_a_running_adaptation_is_a_conflict():
    assert http_status(AdaptationRunning("busy")) == 409 and http_status(AdaptError("busy")) == 422


class _Aborted(Exception):
    pass


class _Context:
    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)


class _Servicer:
    @translate_errors
    def Unary(self, request, context):
        raise NotFound(f"no artifact {request}")

    @translate_errors
    def Streaming(self, request, context):
        yield 1
        raise QueueError("bad format")


def test_the_grpc_translator_aborts_with_the_code_and_the_message():
    with pytest.raises(_Aborted) as info:
        _Servicer().Unary("abc", _Context())
    assert info.value.args == (grpc.StatusCode.NOT_FOUND, "no artifact abc")
    stream = _Servicer().Streaming(None, _Context())
    assert next(stream) == 1
    with pytest.raises(_Aborted) as info:
        next(stream)
    assert info.value.args == (grpc.StatusCode.INVALID_ARGUMENT, "bad format")


@pytest.mark.parametrize("error", [DatasetError("no such file"), AgentError("no such file")])
def test_the_cli_prints_one_line_and_exits_1(error):
    with pytest.raises(SystemExit) as info, exit_on_error("latfarm x"):
        raise error
    assert info.value.code == "latfarm x: no such file"  # SystemExit(str): printed on stderr, exit status 1


def test_the_client_error_carries_status_and_code():
    err = LatfarmError("taken", status=409, code="already_exists", field="name")
    assert (str(err), err.message, err.code, err.field) == ("409: taken", "taken", "already_exists", "name")
    assert str(LatfarmError("down", status=0, code="unavailable")) == "down"


def _lost_connection() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("connection to server at 10.1.2.3, port 5432 failed"))


def test_a_database_that_cannot_serve_is_unavailable_without_internals():
    """REST answers 503 JSON and gRPC UNAVAILABLE (which agents retry); neither shows the driver's message."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from latfarm.services.api.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/down")
    def down():
        raise _lost_connection()

    response = TestClient(app, raise_server_exceptions=False).get("/down")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable" and "10.1.2.3" not in response.text

    class Servicer:
        @translate_errors
        def Report(self, request, context):
            raise _lost_connection()

    with pytest.raises(_Aborted) as info:
        Servicer().Report(None, _Context())
    assert info.value.args[0] == grpc.StatusCode.UNAVAILABLE and "10.1.2.3" not in info.value.args[1]
