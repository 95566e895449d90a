"""Python client of the REST API, for NAS code and scripts::

    from latfarm.services.client import Client
    client = Client("http://127.0.0.1:8000", api_key)
    items = client.predict("pixel7", ["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"])

Transient failures are retried with exponential backoff (the rule: ``Client._retry_delay``): a request that never
connected, a 503 (refused before any work) and, for idempotent requests only, any other transport error or 5xx
answer: a few times (``retries``), or while waiting for results (``wait``, ``wait_all``, ``wait_adaptation``) for up
to ``wait_retry_s`` without an answer, when a 429's ``Retry-After`` is waited out too. A submission (``POST
/v1/jobs``) that may have reached the server is never sent again: the API has no idempotency key, and a second one
would queue the jobs twice. Any other failure raises ``LatfarmError`` with the HTTP ``status`` (0: no answer), the
server's ``message`` and its error ``code`` (``unavailable`` when no server or no latfarm server answered: no
connection, or an answer that is not JSON, or none for ``wait_retry_s`` while waiting). A device name or batch id
that no server issues (``a/b``, ``..``) raises ``invalid_argument`` before any request.
"""

from __future__ import annotations

import numbers
import operator
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from latfarm.common.words import counted, named_batches
from latfarm.services.core.errors import LatfarmError
from latfarm.services.core.names import id_refusal, is_device_name, is_id, refusal
from latfarm.services.core.states import AdaptState, JobState

REFUSED_STATUSES = frozenset({503})  # refused before any work: sent again whatever the method
RETRY_STATUSES = frozenset({500, 502, 503, 504})  # an idempotent request's answers that are sent again
THROTTLED = 429  # too many failed authentications from this address: waited out (Retry-After) while waiting
WAIT_RETRY_S = 300.0  # how long a wait keeps retrying a server that does not answer (LATFARM_WAIT_RETRY_S)
BACKOFF_CAP_S = 5.0  # the longest pause between a wait's tries: it resumes within seconds of the server's return
DONE_STATES = (AdaptState.active, AdaptState.failed, AdaptState.cancelled)  # an adaptation waited for has ended
# Who may start or cancel a device's adaptation (it changes what the device serves).
ADAPT_KEYS = "adapting a device's predictor takes its owner's key (scope owner) or an admin key"


@dataclass
class _Outage:
    """A wait's patience with a server that does not answer: since when (None: it answers), how many tries failed,
    whether the user was told."""

    patience_s: float
    since: float | None = None
    failures: int = 0
    told: bool = False


class Client:
    """A client of the REST API. Requests are retried with doubling backoff where a retry is safe; errors raise
    ``LatfarmError`` with the server's code. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s=0.5,
        wait_retry_s: float = WAIT_RETRY_S,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        """Talk to ``base_url`` with ``api_key``; ``retries`` more tries ``backoff_s`` (doubling) apart, and while
        waiting for results, tries for up to ``wait_retry_s`` s without an answer (``notify`` gets one line when a
        wait starts retrying)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.retries, self.backoff_s, self.wait_retry_s, self.notify = retries, backoff_s, wait_retry_s, notify
        self._outage: _Outage | None = None  # set while waiting
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout,
            transport=httpx.HTTPTransport(retries=1),  # an immediate second try on connect errors; then backoff
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> Client:
        """The client itself."""
        return self

    def __exit__(self, *_) -> None:
        """``close`` the client."""
        self.close()

    # --- transport -------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs) -> httpx.Response:
        idempotent = method in ("GET", "PUT", "DELETE") if idempotent is None else idempotent
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as err:
                problem = f"{method} {path}: {type(err).__name__}: {err}"
                if not (idempotent or isinstance(err, httpx.ConnectError)):  # it may have reached the server
                    raise _unavailable(problem) from err
                if (delay := self._retry_delay(attempt, problem)) is None:
                    raise self._given_up(problem) from err
            else:
                if not self._transient(response.status_code, idempotent):
                    break
                problem = f"{method} {path}: HTTP {response.status_code}"
                if (delay := self._retry_delay(attempt, problem, _retry_after(response))) is None:
                    if self._outage is None:
                        break  # the answer's own error
                    raise self._given_up(problem)
            time.sleep(delay)
            attempt += 1
        if self._outage is not None:
            self._outage.since, self._outage.failures = None, 0
        if response.is_error:
            raise _error(response)
        return response

    def _transient(self, status: int, idempotent: bool) -> bool:
        """Whether an answer with HTTP ``status`` is worth sending the request again: a refusal before any work
        (503; 429 while waiting), or a server error of an idempotent request."""
        return (
            status in REFUSED_STATUSES
            or (idempotent and status in RETRY_STATUSES)
            or (status == THROTTLED and self._outage is not None)
        )

    def _retry_delay(self, attempt: int, problem: str, hint_s: float | None = None) -> float | None:
        """The pause before trying a failed request again, or None to give up: outside a wait, ``retries`` tries
        ``backoff_s`` doubling apart; while waiting, doubling up to ``BACKOFF_CAP_S`` (or the server's ``hint_s``)
        until ``wait_retry_s`` have passed without an answer, the last try then (``notify`` told once, naming
        ``problem``)."""
        outage = self._outage
        if outage is None:
            return None if attempt >= self.retries else self.backoff_s * 2**attempt
        now = time.monotonic()
        outage.since = now if outage.since is None else outage.since
        left = outage.patience_s - (now - outage.since)
        if left <= 0:
            return None
        backoff = min(BACKOFF_CAP_S, self.backoff_s * 2**outage.failures)
        delay = min(left, hint_s if hint_s is not None else backoff)  # a last try as the patience ends
        if not outage.told and self.notify is not None:
            self.notify(
                f"{self.base_url} is unreachable or busy ({problem}); retrying for up to {outage.patience_s:.0f} s"
            )
        outage.told, outage.failures = True, outage.failures + 1
        return delay

    def _given_up(self, problem: str) -> LatfarmError:
        """The error of a request given up on (``unavailable``): ``problem``, its last failure; while waiting, led by
        how long the server has not answered."""
        if self._outage is None or self._outage.since is None:
            return _unavailable(problem)
        waited = time.monotonic() - self._outage.since
        return _unavailable(f"{self.base_url} unreachable or busy for {waited:.0f} s ({problem})")

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Within the block (a wait), transient failures are retried for up to ``wait_retry_s`` without an
        answer."""
        if self._outage is not None:  # a wait within a wait: the outer one's patience holds
            yield
            return
        self._outage = _Outage(self.wait_retry_s)
        try:
            yield
        finally:
            self._outage = None

    def _json(self, method: str, path: str, **kwargs):
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as err:
            raise _not_latfarm(response) from err

    # --- devices ---------------------------------------------------------------------------------------------
    def health(self) -> dict:
        """The server's ``/healthz`` answer (raises ``LatfarmError`` when it is not healthy)."""
        return self._json("GET", "/healthz")

    def devices(self) -> list[dict]:
        """Every device, with its agents online (``agents_online``)."""
        return self._json("GET", "/v1/devices")

    def device(self, name: str) -> dict:
        """A device with its measurement counts, agents online and predictor state."""
        return self._json("GET", _device_path(name))

    def create_device(self, name: str, **fields) -> dict:
        """Create a device called ``name`` (``fields``: its other attributes); returns it."""
        return self._json("POST", "/v1/devices", json={"name": name, **fields})

    def enroll(self, device: str, expires_in_s: int | None = None, max_uses: int | None = None) -> str:
        """A new enrollment token for agents of ``device``: ``expires_in_s`` (else the server's default lifetime)
        and at most ``max_uses`` registrations (else any number)."""
        body = {key: value for key, value in {"expires_in_s": expires_in_s, "max_uses": max_uses}.items() if value}
        return self._json("POST", _device_path(device, "/enrollments"), json=body or None)["token"]

    def agents(self, device: str) -> list[dict]:
        """The agents of ``device``."""
        return self._json("GET", _device_path(device, "/agents"))

    def export(self, device: str, fmt: str = "csv", space: str = "nb201") -> bytes:
        """A device's measurements of ``space`` as CSV text or a LatBench pickle (``fmt="latbench"``)."""
        return self._export(device, fmt, space).content

    def export_to(self, out: Path, device: str, fmt: str = "csv", space: str = "nb201") -> int | None:
        """Write ``export``'s answer to the file ``out``; returns how many measurements it holds (None from a server
        that does not say). Raises ``OSError`` when the file cannot be written (after the request)."""
        response = self._export(device, fmt, space)
        out.write_bytes(response.content)
        count = response.headers.get("X-Measurements")
        return int(count) if count is not None and count.isdigit() else None

    def _export(self, device: str, fmt: str, space: str) -> httpx.Response:
        params = {"format": fmt, "space": space}
        return self._request("GET", _device_path(device, "/export"), params=params)

    def create_key(self, name: str, scopes: Sequence[str]) -> str:
        """A new API key (shown once) called ``name`` with ``scopes``."""
        return self.new_key(name, scopes)["key"]

    def new_key(self, name: str, scopes: Sequence[str]) -> dict:
        """``create_key``'s whole answer: the new key's ``id``, ``name``, ``scopes`` and ``key`` (shown once)."""
        return self._json("POST", "/v1/keys", json={"name": name, "scopes": list(scopes)})

    def keys(self) -> list[dict]:
        """Every API key (``id``, ``name``, ``scopes``, ``created_at``, ``revoked``), without secrets."""
        return self._json("GET", "/v1/keys")

    def revoke_key(self, key_id: int) -> None:
        """Revoke API key ``key_id``: requests with it are refused from then on."""
        self._request("DELETE", f"/v1/keys/{int(key_id)}")

    # --- latency ---------------------------------------------------------------------------------------------
    def predict(self, device: str, archs: Sequence[str | int | Sequence[int]], space: str = "nb201") -> list[dict]:
        """Per arch of ``space``: its canonical ``arch``, ``latency_ms`` (measured, else predicted; None when
        neither), ``std_ms``, ``source``."""
        body = {"device": _checked_device(device), "space": space, "archs": [_arch(a) for a in archs]}
        return self._json("POST", "/v1/predict", json=body, idempotent=True)["items"]

    def rank(self, device: str, archs: Sequence[str | int | Sequence[int]], space: str = "nb201") -> list[dict]:
        """The archs of ``space`` fastest first on the device: ``rank``, ``arch``, ``latency_ms``, ``source``."""
        body = {"device": _checked_device(device), "space": space, "archs": [_arch(a) for a in archs]}
        return self._json("POST", "/v1/rank", json=body, idempotent=True)["items"]

    def measurements(
        self,
        device: str | None = None,
        arch: str | int | None = None,
        source: str | None = None,
        page_size: int = 500,
        space: str | None = None,
    ) -> Iterator[dict]:
        """Every matching measurement, following the cursor across pages. ``space`` keeps that search space's;
        ``arch`` (a string or a reference position) is of ``space``, else of the space of its form (a position:
        NB201's)."""
        filters = {"device": device, "space": space, "source": source}
        params: dict[str, str | int] = {k: v for k, v in filters.items() if v is not None}
        if arch is not None:
            params["arch"] = _arch(arch)
        params["limit"] = page_size
        while True:
            page = self._json("GET", "/v1/measurements", params=params)
            yield from page["items"]
            if not page.get("next"):
                return
            params["cursor"] = page["next"]

    # --- measurement jobs ------------------------------------------------------------------------------------
    def submit(
        self,
        device: str,
        archs: Sequence[str | int | Sequence[int]],
        fmt: str | None = None,
        space: str = "nb201",
        protocol: dict | None = None,
        conditions: dict | None = None,
        drawn_at_random: bool = False,
    ) -> str:
        """Queue measurements; returns the batch id. ``fmt``: the models' format (``onnx`` | ``tflite``), by default
        the one the device's runtime runs (a LiteRT device's: tflite; the server refuses another). ``protocol``
        overrides the agents' options (e.g. ``rounds``), ``conditions`` the device's measurement conditions
        (``batch_size``, ``precision``, ``graph``);
        ``drawn_at_random``: the archs were drawn uniformly at random from the space's reference set (their
        measurements then calibrate adaptations' spread)."""
        body: dict[str, Any] = {
            "device": _checked_device(device),
            "space": space,
            "archs": [_arch(a) for a in archs],
        }
        if fmt is not None:
            body["format"] = fmt
        if protocol is not None:
            body["protocol"] = protocol
        if conditions is not None:
            body["conditions"] = conditions
        if drawn_at_random:
            body["drawn_at_random"] = True
        return self._json("POST", "/v1/jobs", json=body)["id"]

    def job(self, batch_id: str, items: bool = False) -> dict:
        """Progress of a batch: counts ``queued``, ``running``, ``done``, ``failed``, ``cancelled`` (and each job with
        ``items``)."""
        return self._json("GET", _batch_path(batch_id), params={"items": "true"} if items else None)

    def measure(
        self,
        device: str,
        archs: Sequence[str | int | Sequence[int]],
        fmt: str | None = None,
        wait: bool = True,
        timeout: float = 600.0,
        poll_s: float = 1.0,
        protocol: dict | None = None,
        on_progress: Callable[[dict], None] | None = None,
        conditions: dict | None = None,
        space: str = "nb201",
        drawn_at_random: bool = False,
    ) -> dict:
        """Queue measurements and, with ``wait``, block until every job is done or failed (``on_progress`` gets
        each poll's counts).

        ``protocol`` sets how agents measure these jobs (``warmup_runs``, ``runs_per_round``, ``rounds``,
        ``threads``, ``timeout_s``, ``statistic``); omitted fields keep each agent's options. ``conditions`` sets
        what is measured (``batch_size``, ``precision``: fp32 | fp16 | int8, ``graph``: reference | pruned); omitted
        fields keep the device's (its batch size and precision, the reference graph). ``archs`` are of search space
        ``space`` (strings, index lists or reference positions); ``drawn_at_random``: they were drawn uniformly at
        random from its reference set (their measurements then calibrate adaptations' spread). ``fmt``: the models'
        format, by default the one the device's runtime runs (``submit``).

        Returns the batch (``id`` and counts); when waited for, ``items`` lists each arch with ``state`` and
        ``latency_ms``, and ``conditions`` says what they were measured under. Raises ``TimeoutError`` when jobs
        are still pending after ``timeout`` seconds.
        """
        batch_id = self.submit(
            device,
            archs,
            fmt=fmt,
            space=space,
            protocol=protocol,
            conditions=conditions,
            drawn_at_random=drawn_at_random,
        )
        if not wait:
            return self.job(batch_id)
        return self.wait(batch_id, timeout=timeout, poll_s=poll_s, on_progress=on_progress)

    def wait(
        self,
        batch_id: str,
        timeout: float = 600.0,
        poll_s: float = 1.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> dict:
        """Block until no job of the batch is queued or running; returns it with ``items``. Raises ``TimeoutError``
        (the jobs stay queued: ``cancel`` them) when jobs are still pending after ``timeout`` seconds."""
        return self.wait_all([batch_id], timeout=timeout, poll_s=poll_s, on_progress=on_progress)[0]

    def wait_all(
        self,
        batch_ids: Sequence[str],
        timeout: float = 600.0,
        poll_s: float = 1.0,
        on_progress: Callable[[dict], None] | None = None,
    ) -> list[dict]:
        """``wait`` for several batches as one: ``on_progress`` gets each poll's counts summed over them (``queued``,
        ``running``, ``done``, ``failed``, ``cancelled``); returns each batch with ``items``, in order."""
        with self._waiting():
            return self._wait_all(batch_ids, timeout, poll_s, on_progress)

    def _wait_all(
        self, batch_ids: Sequence[str], timeout: float, poll_s: float, on_progress: Callable[[dict], None] | None
    ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            batches = [self.job(batch_id) for batch_id in batch_ids]
            progress = {state.value: sum(b.get(state.value, 0) for b in batches) for state in JobState}
            if on_progress:
                on_progress(progress)
            pending = progress["queued"] + progress["running"]
            if pending == 0:
                return [self.job(batch_id, items=True) for batch_id in batch_ids]
            if time.monotonic() > deadline:
                ids = " ".join(batch_ids)
                raise TimeoutError(
                    f"{named_batches(batch_ids)}: {counted(pending, 'job')} still pending (latfarm cancel {ids})"
                )
            time.sleep(poll_s)

    def cancel(self, batch_id: str) -> dict:
        """Cancel the batch's queued and running jobs; returns ``cancelled_now`` and the batch's ``progress``."""
        return self._json("POST", _batch_path(batch_id, "/cancel"), idempotent=True)

    # --- predictor adaptation --------------------------------------------------------------------------------
    def adapt(
        self,
        device: str,
        samples: int = 10,
        wait: bool = True,
        progress: bool = False,
        timeout: float = 1800.0,
        poll_s: float = 2.0,
        space: str = "nb201",
        calibration: int = 0,
        fmt: str | None = None,
    ) -> dict:
        """Adapt the predictor of ``space`` to ``device`` from ``samples`` measurements by its agents, with
        ``calibration`` random other archs measured to calibrate its spread (0 or 10-200), the networks exported as
        ``fmt`` (``onnx`` | ``tflite``; by default the one the device's runtime runs, the only one the server takes
        for it); returns the adaptation's state (``state`` active when waited for: ``wait_adaptation``).
        ``progress`` prints updates to stderr. A key that may not adapt the device raises ``LatfarmError``
        (``permission_denied``) naming the keys that may."""
        body: dict[str, Any] = {"space": space, "samples": samples, "calibration": calibration}
        if fmt is not None:
            body["format"] = fmt
        with _refused_needs(ADAPT_KEYS):
            state = self._json("POST", _device_path(device, "/adapt"), json=body)
        if not wait:
            return state
        return self.wait_adaptation(device, space, progress=progress, timeout=timeout, poll_s=poll_s)

    def wait_adaptation(
        self, device: str, space: str = "nb201", progress: bool = False, timeout: float = 1800.0, poll_s: float = 2.0
    ) -> dict:
        """Wait until the device's latest adaptation of ``space`` is active and return its state; ``LatfarmError``
        when it ends failed or cancelled, ``TimeoutError`` after ``timeout`` s."""
        with self._waiting():
            return self._wait_adaptation(device, space, progress, timeout, poll_s)

    def _wait_adaptation(self, device: str, space: str, progress: bool, timeout: float, poll_s: float) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while True:
            state = self.adaptation(device, space)
            if progress:
                counts = state.get("progress") or {}
                line = f"{device}: {state['state']}" + (
                    f" ({counts.get('done', 0)}/{counts.get('total', state.get('samples'))} measured)" if counts else ""
                )
                if line != last:
                    print(line, file=sys.stderr, flush=True)
                    last = line
            if state["state"] in DONE_STATES:
                if state["state"] != "active":
                    raise LatfarmError(f"adaptation of {device} {state['state']}: {state.get('error')}", status=0)
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"adaptation of {device} still {state['state']} after {timeout:.0f} s")
            time.sleep(poll_s)

    def adaptation(self, device: str, space: str = "nb201") -> dict:
        """The device's latest adaptation of ``space``: its ``state`` (``none`` when it has none), ``progress``,
        ``metrics``."""
        return self._json("GET", _device_path(device, "/adapt"), params={"space": space})

    def cancel_adaptation(self, device: str, space: str = "nb201") -> dict:
        """Cancel the device's adaptation of ``space`` while it measures (and its jobs); returns its state. Its owner's
        key or an admin key (else ``LatfarmError``, ``permission_denied``)."""
        with _refused_needs(ADAPT_KEYS):
            return self._json("POST", _device_path(device, "/adapt/cancel"), params={"space": space})


@contextmanager
def _refused_needs(keys: str) -> Iterator[None]:
    """Run the block; a ``permission_denied`` error it raises says which ``keys`` may do it."""
    try:
        yield
    except LatfarmError as err:
        if err.code != "permission_denied":
            raise
        raise LatfarmError(f"{err.message} ({keys})", code=err.code, status=err.status, field=err.field) from err


def _checked_device(name: str) -> str:
    """``name``; a name no device may have raises ``LatfarmError`` (``invalid_argument``, field ``device``) before
    any request."""
    if not is_device_name(name):
        raise LatfarmError(refusal(name), code="invalid_argument", status=0, field="device")
    return name


def _device_path(name: str, rest: str = "") -> str:
    """``/v1/devices/{name}{rest}``, ``name`` checked (``_checked_device``): in a path, ``a/b`` or ``..`` would name
    another route."""
    return f"/v1/devices/{_checked_device(name)}{rest}"


def _batch_path(batch_id: str, rest: str = "") -> str:
    """``/v1/jobs/{batch_id}{rest}``; an id not of the form the server issues raises ``LatfarmError``
    (``invalid_argument``) before any request."""
    if not is_id(batch_id):
        raise LatfarmError(id_refusal(batch_id), code="invalid_argument", status=0)
    return f"/v1/jobs/{batch_id}{rest}"


def _arch(arch: Any) -> Any:
    """An arch as the API takes it: a string, a reference position, or an index list. Any integer type (numpy's
    too, as ``np.random.choice`` draws them) is a position, any other iterable (a tuple, a numpy array) an index list;
    anything else goes as it is, for the server to refuse naming ``archs[i]``."""
    if isinstance(arch, str):
        return arch
    if _is_integer(arch):
        return operator.index(arch)
    if isinstance(arch, Iterable):
        return [operator.index(v) if _is_integer(v) else v for v in arch]
    return arch


def _is_integer(value: object) -> bool:
    """An integer of any type (Python's, numpy's), not a bool (JSON's ``true`` is no position)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _error(response: httpx.Response) -> LatfarmError:
    """The error an answer carries: the server's message, code and field when it sent the error shape."""
    try:
        body = response.json()
    except ValueError:
        return _not_latfarm(response)
    if not isinstance(body, dict):
        return LatfarmError(str(body), status=response.status_code)
    message = str(body.get("message") or body.get("detail") or body)
    return LatfarmError(message, status=response.status_code, code=body.get("code"), field=body.get("field"))


def _unavailable(message: str) -> LatfarmError:
    """No answer came (status 0, code ``unavailable``): ``message`` names the request and why."""
    return LatfarmError(message, status=0, code="unavailable")


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds an answer's ``Retry-After`` asks for (None: none, or an HTTP date, which latfarm never sends)."""
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _not_latfarm(response: httpx.Response) -> LatfarmError:
    """An answer that is not JSON (another web server, or a proxy's error page): one line naming the request and the
    HTTP status, code ``unavailable`` (no latfarm server answered)."""
    request = response.request
    status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
    message = f"{request.method} {request.url.path}: {status}, not a latfarm answer"
    return LatfarmError(message, status=response.status_code, code="unavailable")


__all__ = ["Client", "LatfarmError"]
