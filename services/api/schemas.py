"""Request and response bodies of the REST API (pydantic)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticKnownError

from latfarm.agents.measurement import BOUNDS as PROTOCOL
from latfarm.agents.runtimes import ONNXRUNTIME, RUNTIME_FORMATS, RUNTIMES
from latfarm.predictor import nb201
from latfarm.predictor.spaces import SPACES as REGISTERED_SPACES
from latfarm.predictor.spaces import SearchSpace, get_space
from latfarm.proto.v1.names import STATISTICS
from latfarm.services.core.clock import as_utc
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.core.names import MAX_NAME_LENGTH, NAME_PATTERN, is_device_name, refusal
from latfarm.services.core.security import ENROLLMENT_BOUNDS, KEY_NAME_BOUNDS, Scope
from latfarm.services.domain.conditions import (
    DEFAULT_SPACE,
    GRAPHS,
    PRECISIONS,
    RANGES,
    SPACES,
    Conditions,
    device_conditions,
)
from latfarm.services.domain.network_export import FORMATS

MAX_ARCHS = nb201.NUM_ARCHS  # one request may name every NB201 cell, no more
MAX_KEY_ID = 2**31 - 1  # API key ids are INTEGER (32-bit on PostgreSQL)


def _whole_number(value: object) -> object:
    """JSON Schema's "integer": 3 and 3.0 (the int check then refuses 3.5); never true or "3" (pydantic's
    ``int_type``, which the API words ``must be a whole number, got true``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticKnownError("int_type")
    return value


WHOLE = BeforeValidator(_whole_number)  # last in an integer request field: Annotated[int, Field(bounds), WHOLE]


def _space_arch_schemas(spaces: Iterable[SearchSpace] = REGISTERED_SPACES.values()) -> list[dict]:
    """The arch forms of ``spaces`` (default: every registered one): canonical strings, index lists and, where a
    space has a reference set, positions in it (NB201: official indices)."""
    forms: list[dict] = []
    for space in spaces:
        item = {"type": "integer", "minimum": 0, "maximum": space.choices - 1}
        forms.append({"type": "string", "pattern": space.string_pattern})
        forms.append({"type": "array", "items": item, "minItems": space.length, "maxItems": space.length})
        if (reference := space.reference_set()) is not None:
            forms.append({"type": "integer", "minimum": 0, "maximum": len(reference) - 1})
    return forms


# An arch of any space: its string, its index list, or a position in its reference set (NB201: official index; 3.0
# is 3, true and "3" are not). The schema shows the forms the server accepts; its own check names a refused one.
SpaceArch = Annotated[
    StrictStr | Annotated[int, WHOLE] | list[Annotated[int, WHOLE]], WithJsonSchema({"anyOf": _space_arch_schemas()})
]


def _plain_positions(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """A non-empty list of plain ints (positions: the common request) as it is, checked at C speed: each entry
    would pass ``SpaceArch`` unchanged, and its per-entry checks cost more than the rest of a request. Anything
    else goes through them."""
    if type(value) is list and value and {type(entry) for entry in value} == {int}:
        return value
    return handler(value)


SpaceArchs = Annotated[list[SpaceArch], WrapValidator(_plain_positions)]


def _variant_pair(resolution: int, classes: int, optional: dict[str, int] | None = None) -> dict:
    """The schema of an object whose ``resolution`` and ``classes`` are this pair; a field whose value equals its
    entry in ``optional`` (the default) may be left out."""
    pair = {"resolution": resolution, "classes": classes}
    return {
        "properties": {name: {"const": value} for name, value in pair.items()},
        "required": [name for name, value in pair.items() if (optional or {}).get(name) != value],
    }


def _conditions_schema(space: SearchSpace) -> dict:
    """The conditions overrides ``space`` accepts: its graphs, and resolution with classes, both or neither, one of
    its input variants."""
    neither = {"properties": {"resolution": {"type": "null"}, "classes": {"type": "null"}}}
    return {
        "type": "object",
        "properties": {"graph": {"anyOf": [{"type": "string", "enum": list(space.graphs)}, {"type": "null"}]}},
        "anyOf": [neither, *(_variant_pair(v.resolution, v.classes) for v in space.input_variants.values())],
    }


def space_branches(conditions: bool = False) -> Callable[[dict, type[BaseModel]], None]:
    """A request model's ``json_schema_extra`` saying its ``archs`` (and, with ``conditions``, its ``conditions``)
    must be valid in its ``space``: one ``anyOf`` branch per registered space, ``space`` left out only in the
    branch of the model's default space."""

    def extra(schema: dict, model: type[BaseModel]) -> None:
        default = model.model_fields["space"].default
        branches = []
        for space in REGISTERED_SPACES.values():
            properties: dict[str, dict] = {
                "space": {"const": space.name},
                "archs": {"items": {"anyOf": _space_arch_schemas([space])}},
            }
            if conditions:
                properties["conditions"] = {"anyOf": [{"type": "null"}, _conditions_schema(space)]}
            branches.append({"properties": properties, "required": [] if space.name == default else ["space"]})
        schema["anyOf"] = branches

    return extra


def _device_variants(schema: dict, model: type[BaseModel]) -> None:
    """A new device's schema: its resolution and classes (left out: their defaults) together an input variant of
    some registered space."""
    defaults = {name: model.model_fields[name].default for name in ("resolution", "classes")}
    pairs = {(v.resolution, v.classes) for space in REGISTERED_SPACES.values() for v in space.input_variants.values()}
    schema["anyOf"] = [_variant_pair(r, c, defaults) for r, c in sorted(pairs)]


# Choices the schema lists; the server's own check names a wrong one (422).
Space = Annotated[str, WithJsonSchema({"type": "string", "enum": list(SPACES)})]
Precision = Annotated[str, WithJsonSchema({"type": "string", "enum": list(PRECISIONS)})]
Graph = Annotated[str, WithJsonSchema({"type": "string", "enum": list(GRAPHS)})]


def _one_of(known: tuple[str, ...]) -> Callable[[str], str]:
    """A validator of a string among ``known`` (their one home passed in); another value is refused as the command
    line refuses it (``must be one of onnx, tflite, got 'pt'``)."""

    def checked(value: str) -> str:
        if value not in known:
            raise ValueError(f"must be one of {', '.join(known)}, got {value!r}")
        return value

    return checked


def _enum(known: tuple[str, ...]) -> WithJsonSchema:
    """The schema of a string among ``known``."""
    return WithJsonSchema({"type": "string", "enum": list(known)})


Runtime = Annotated[str, AfterValidator(_one_of(RUNTIMES)), _enum(RUNTIMES)]  # the runtimes agents measure with
ModelFormat = Annotated[str, AfterValidator(_one_of(FORMATS)), _enum(FORMATS)]  # the model formats latfarm serves
Statistic = Annotated[str, AfterValidator(_one_of(STATISTICS)), _enum(STATISTICS)]  # how agents give the latency
FORMAT_DESCRIPTION = (
    "Model format of the networks: onnx | tflite. Default: the one the device's runtime runs ("
    + ", ".join(f"{runtime}: {fmt}" for runtime, fmt in RUNTIME_FORMATS.items())
    + "); another is refused (409)."
)


# Stored times are UTC; SQLite hands them back naive.
# Every time the API returns: UTC, written ISO 8601 with ``Z`` (``core.clock.iso_utc`` where no schema writes it).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class Strict(BaseModel):
    """Base of request bodies: unknown fields are rejected (422)."""

    model_config = ConfigDict(extra="forbid")


def _device_name(name: str) -> str:
    """``name`` if it follows the device-name rule, else its refusal (a length the pattern does not bound)."""
    if not is_device_name(name):
        raise ValueError(refusal(name))
    return name


class DeviceCreate(Strict):
    """A new device: its name (``[A-Za-z0-9._-]``) and how it runs models."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_device_variants)
    name: Annotated[str, AfterValidator(_device_name)] = Field(
        pattern=NAME_PATTERN,
        json_schema_extra={"maxLength": MAX_NAME_LENGTH},  # the rule checks it: its message, not pydantic's
        examples=["pixel7-cpu-fp32"],
    )
    description: str = ""
    hardware: str = ""
    runtime: Runtime = Field(
        ONNXRUNTIME,
        description=f"{' or '.join(RUNTIMES)}: the runtime its agents measure with; its jobs' models are in that "
        "runtime's format",
    )
    precision: Precision = Field("fp32", description="fp32, fp16 or int8: its networks' precision")
    batch_size: Annotated[int, Field(**RANGES["batch_size"]), WHOLE] = 1
    resolution: Annotated[int, Field(**RANGES["resolution"]), WHOLE] = Field(
        32, description="input height = width of its networks, px (NB201 on CIFAR-10: 32)"
    )
    classes: Annotated[int, Field(**RANGES["classes"]), WHOLE] = Field(
        10, description="output classes of its networks (CIFAR-10: 10)"
    )

    @model_validator(mode="after")
    def _sound_conditions(self) -> DeviceCreate:
        """The device's default measurement conditions must be valid ones (``Conditions`` checks them)."""
        device_conditions(self.batch_size, self.precision, self.resolution, self.classes)
        return self


class DeviceOut(BaseModel):
    """A device as listed."""

    name: str
    description: str
    hardware: str
    runtime: str
    precision: str
    batch_size: int
    resolution: int
    classes: int
    owner_key_id: int | None = Field(description="id of the API key that owns it; null: only admins act on it")
    created_at: UtcDatetime


class DeviceListed(DeviceOut):
    """A device as ``GET /v1/devices`` lists it: with its agents online."""

    agents_online: int = Field(description="its agents whose last heartbeat is at most two intervals old")


class DeviceOwner(Strict):
    """A device's new owner (admins only)."""

    key_id: Annotated[int, Field(ge=1, le=MAX_KEY_ID), WHOLE] | None = Field(
        description="id of the owning API key (404 when none has it); null: only admins act on the device"
    )


class DeviceDetail(DeviceOut):
    """A device with its measurement counts, agents and predictor state."""

    measurements: dict[str, int]  # per source, plus "total"
    archs_measured: int
    agents: int
    agents_online: int
    predictor: dict = Field(
        description="Its latest adaptation attempt of any space, not necessarily what predicts (a cancelled or failed "
        "attempt leaves an earlier active one serving: see `active`): 'space', 'state': measuring | training | "
        "active | failed | cancelled | none, and details"
    )
    predictors: dict[str, dict] = Field(
        default_factory=dict,
        description="Per space the device has adaptations of: its latest one, as `predictor` (it may be cancelled "
        "or failed while an earlier one stays active: see `active`).",
    )
    active: dict[str, dict] = Field(
        default_factory=dict,
        description="What predicts: per space the device has an active adaptation of, that one, as `predictor`; "
        "its `current` false: fitted under conditions the device no longer has, so predictions do not use it.",
    )


class EnrollmentCreate(Strict):
    """Options of a new enrollment token."""

    expires_in_s: Annotated[int, Field(**ENROLLMENT_BOUNDS["expires_in_s"]), WHOLE] | None = Field(
        None, description="Lifetime of the token, s, at most a year; none: the server's LATFARM_ENROLLMENT_TTL_H."
    )
    max_uses: Annotated[int, Field(**ENROLLMENT_BOUNDS["max_uses"]), WHOLE] | None = Field(
        None, description="Agents it may register; none: any number."
    )


class EnrollmentOut(BaseModel):
    """An enrollment token an agent registers with (shown once)."""

    token: str
    device: str
    expires_at: UtcDatetime | None
    max_uses: int | None = None


class AgentOut(BaseModel):
    """An agent of a device: state, liveness (``online``) and what it reported about itself."""

    id: str
    name: str
    state: str
    online: bool
    last_heartbeat: UtcDatetime | None
    registered_at: UtcDatetime
    descriptor: dict


class MeasureProtocol(Strict):
    """How agents measure a request's jobs; an omitted field keeps the agent's own option."""

    warmup_runs: Annotated[int, Field(**PROTOCOL["warmup_runs"]), WHOLE] | None = Field(
        None, description="Untimed runs per model per round."
    )
    runs_per_round: Annotated[int, Field(**PROTOCOL["runs_per_round"]), WHOLE] | None = Field(
        None, description="Timed runs per model per round."
    )
    rounds: Annotated[int, Field(**PROTOCOL["rounds"]), WHOLE] | None = Field(
        None, description="Interleaved rounds over the models leased together."
    )
    threads: Annotated[int, Field(**PROTOCOL["threads"]), WHOLE] | None = None
    timeout_s: Annotated[float, Field(**PROTOCOL["timeout_s"])] | None = Field(
        None, description="Wall-clock limit per model."
    )
    statistic: Statistic | None = Field(None, description="The headline latency: fastest run or median.")


class ConditionsRequest(Strict):
    """A job's overrides of its device's measurement conditions; each field left out keeps the device's value.

    Values are checked by ``domain.conditions.Conditions`` (422 naming the field)."""

    resolution: Annotated[int, Field(**RANGES["resolution"]), WHOLE] | None = Field(
        None,
        description="Input px; with classes, one of the space's input variants (default: the device's, when "
        "the space has it, else the space's default variant).",
    )
    classes: Annotated[int, Field(**RANGES["classes"]), WHOLE] | None = Field(
        None, description="Output classes; see resolution."
    )
    batch_size: Annotated[int, Field(**RANGES["batch_size"]), WHOLE] | None = Field(
        None, description="Images per inference; default: the device's batch size."
    )
    precision: Precision | None = Field(None, description="fp32 | fp16 | int8; default: the device's precision.")
    graph: Graph | None = Field(
        None, description="reference (the benchmark's network, the default) | pruned (ops without effect removed)."
    )


class JobCreate(Strict):
    """A batch of measurement jobs: archs to measure on a device, in one format, with optional protocol and
    conditions overrides."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=space_branches(conditions=True))
    device: str = Field(min_length=1)
    space: Space = Field(
        DEFAULT_SPACE, description="Search space of the archs: one registered in latfarm.predictor.spaces."
    )
    format: ModelFormat | None = Field(None, description=FORMAT_DESCRIPTION)
    archs: SpaceArchs = Field(
        min_length=1,
        description=f"Arch strings, index lists (one choice per position) or positions in the space's reference set "
        f"(NB201: official indices), at most {MAX_ARCHS}.",
    )
    protocol: MeasureProtocol | None = Field(
        None, description="Overrides the agents' measurement options for these jobs."
    )
    conditions: ConditionsRequest | None = Field(
        None,
        description="Overrides the device's measurement conditions (input variant, batch size, precision, graph).",
    )
    drawn_at_random: StrictBool = Field(
        False,
        description="The archs were drawn uniformly at random from the space's reference set, as latfarm measure "
        "--random does; their measurements calibrate adaptations' spread.",
    )

    def overrides(self) -> dict | None:
        """The conditions fields the request sets; ``InvalidArgument`` naming the missing one when it gives only
        one of ``resolution`` and ``classes`` (an input variant is overridden whole)."""
        given = self.conditions.model_dump(exclude_none=True) if self.conditions else None
        if given is not None and len({"resolution", "classes"} & set(given)) == 1:
            (missing,) = {"resolution", "classes"} - set(given)
            known = ", ".join(f"{v.resolution}px/{v.classes}" for v in get_space(self.space).input_variants.values())
            raise InvalidArgument(
                f"{missing}: resolution and classes go together, as an input variant of {self.space}: {known}",
                field=missing,
            )
        return given


class JobCreated(BaseModel):
    """The id of a new batch, how many jobs it queued and in which model format."""

    id: str
    device: str
    jobs: int
    format: str = Field(description="Model format of its jobs (the request's, else the device's runtime's).")


class JobItem(BaseModel):
    """One job of a batch: its state, attempts and, once done, its latency (ms) or error."""

    arch: str
    index: int | None = Field(None, description="Position in its space's reference set; null when none.")
    nb201_index: int | None = Field(None, description="The official NB201 index (NB201 archs only).")
    state: str
    attempts: int
    latency_ms: float | None = None
    statistic: str | None = Field(None, description="How latency_ms was computed: 'min' or 'median' (once done).")
    unstable: bool | None = Field(None, description="Round medians spread over the agent's threshold (once done).")
    error: str | None = None
    drawn_at_random: bool = Field(
        False, description="The arch was drawn uniformly at random: its measurement calibrates adaptations' spread."
    )


class JobProgress(BaseModel):
    """A batch's job counts per state, its protocol and, on request, its items."""

    model_config = ConfigDict(extra="allow")
    id: str
    queued: int
    running: int
    done: int
    failed: int
    cancelled: int = 0
    drawn_at_random: int = Field(
        0, description="How many of its jobs' archs were drawn uniformly at random (they calibrate adaptations)."
    )
    protocol: dict = Field(default_factory=dict, description="The request's protocol; {} = the agents' options.")
    conditions: ConditionsOut = Field(
        description="What its jobs are measured under: the device's defaults with the request's overrides."
    )
    items: list[JobItem] | None = None


class JobCancelled(BaseModel):
    """The answer to cancelling a batch: how many of its jobs were cancelled now, and its counts after."""

    id: str
    cancelled_now: int = Field(description="Queued or running jobs this request cancelled.")
    progress: JobProgress


class ConditionsOut(BaseModel):
    """What a figure was measured (or is answered) under: ``Conditions`` (services/domain/conditions.py)."""

    key: str = Field(description="Canonical string, e.g. nb201/32px/10cls/b1/fp32/reference.")
    space: str
    resolution: int = Field(description="Input height = width, pixels.")
    classes: int
    batch_size: int
    precision: Precision
    graph: str = Field(
        description="reference: the network as the benchmark defines it; pruned (NB201): ops that cannot affect the "
        "output removed."
    )

    @classmethod
    def of(cls, conditions: Conditions) -> ConditionsOut:
        """The response form of ``conditions``: its fields and its key."""
        return cls(key=conditions.key, **conditions.to_dict())


# An arch in a query: a position (a decimal number of up to 100 digits, as int() reads every one: whether the space's
# reference set has it is ``request_arch``'s to say, in the words /v1/predict uses) or any registered space's string.
ARCH_QUERY_PATTERN = (
    "^(?:[0-9]{1,100}|" + "|".join(space.string_pattern[1:-1] for space in REGISTERED_SPACES.values()) + ")$"
)


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error answer: the message (twice: ``detail`` for FastAPI clients), its code and the field it concerns;
    a request that fails validation lists each invalid field in ``errors``."""

    detail: str
    message: str
    code: str = Field(description="invalid_argument, unauthenticated, not_found, ... (gRPC names)")
    field: str | None = Field(None, description="the field it concerns, by its path (a 422: the first invalid one)")
    errors: list[FieldError] | None = Field(None, description="a 422: each invalid field and what is wrong with it")


class HealthOut(BaseModel):
    """What ``/healthz`` answers, with 200 or (database unreachable) 503."""

    status: Literal["ok", "degraded", "error"] = Field(
        description="ok; degraded: Redis unreachable (the server works on); error: the database is unreachable"
    )
    database: str = Field(description="ok, or unreachable: <error class>")
    redis: str = Field(description="not configured, ok, or unreachable: <error class>")
    grpc_port: int = Field(description="the port agents connect to: `latfarm agent --server HOST:<grpc_port>`")
    grpc_tls: bool = Field(
        description="whether that port serves TLS: agents then connect with `--tls` (or `--ca-cert CERT.pem` when its"
        " certificate is self-signed)"
    )


class MeasurementReview(BaseModel):
    """Why an admin quarantines, releases or deletes a measurement (kept in the audit log)."""

    reason: str = Field("", max_length=500)


class MeasurementOut(BaseModel):
    """One stored measurement; latencies in milliseconds."""

    id: int
    device: str
    arch: str
    index: int | None = Field(description="Position in its space's reference set (conditions.space); null when none.")
    nb201_index: int | None = Field(description="The official NB201 index (NB201 archs only).")
    source: str
    dataset: str | None
    latency_ms: float = Field(description="The headline figure: what predictions, rankings and exports use.")
    statistic: str | None = Field(
        None, description="How an agent computed latency_ms: 'min' (fastest timed run) or 'median'; null if imported."
    )
    median_ms: float = Field(description="Median of the round medians (imported rows: the dataset's figure).")
    mean_ms: float | None
    std_ms: float | None
    min_ms: float | None
    p90_ms: float | None
    runs: int | None
    unstable: bool
    quarantined: bool = Field(description="Set by an admin: kept, but read by no estimate, ranking or export.")
    runtime: str | None
    runtime_version: str | None
    provider: str | None
    threads: int | None
    session_create_ms: float | None = Field(description="Cold start: creating the runtime session (agent rows).")
    first_inference_ms: float | None = Field(description="Cold start: the session's first inference (agent rows).")
    conditions: ConditionsOut
    agent_id: str | None
    job_id: str | None
    created_at: UtcDatetime


class MeasurementPage(BaseModel):
    """One page of measurements in storage order, and the cursor of the next."""

    items: list[MeasurementOut]
    next: str | None = Field(None, description="Pass as `cursor` for the next page; null on the last page.")


class PredictRequest(Strict):
    """Archs of one space to predict or rank on a device."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=space_branches())
    device: str = Field(min_length=1)
    space: Space = Field(nb201.SPACE, description="Search space of the archs (registered in latfarm.predictor.spaces).")
    archs: SpaceArchs = Field(
        min_length=1,
        description=f"Arch strings, index lists (one choice per position) or positions in the space's reference set "
        f"(NB201: official indices), at most {MAX_ARCHS}.",
    )


class PredictItem(BaseModel):
    """One arch's latency (ms): measured where known, else predicted with its spread; ``message`` when neither."""

    arch: str = Field(description="Canonical arch string.")
    index: int | None = Field(
        None, description="Position in its space's reference set (NB201: official index; FBNet: among HELP's 5,000)."
    )
    nb201_index: int | None = Field(None, description="The official NB201 index (NB201 archs only).")
    latency_ms: float | None
    std_ms: float | None = Field(
        description="Two meanings, by source. predicted: the predictor's predictive standard deviation of latency_ms. "
        "measured: the standard deviation of the measurement's single timed runs (their spread on the device, not "
        "the uncertainty of latency_ms); null when the row has none (most imported datasets)."
    )
    source: Literal["measured", "predicted"] | None
    origin: str | None = Field(None, description="measured rows: 'agent' or the dataset they were imported from")
    unstable: bool | None = Field(None, description="true when the only measurement failed its repeatability check")
    statistic: str | None = Field(
        None, description="agent-measured rows: 'min' or 'median', the same for all of a device (its latest batch's)"
    )
    message: str | None = None


class PredictResponse(BaseModel):
    """Latencies of the requested archs, in request order, under the device's conditions (the only ones whose
    measurements are used)."""

    device: str
    space: str
    conditions: ConditionsOut
    items: list[PredictItem]


class RankItem(BaseModel):
    """One arch's place in a ranking and the latency (ms) it was ranked by."""

    rank: int = Field(description="1 = fastest.")
    arch: str = Field(description="Canonical arch string.")
    index: int | None = Field(None, description="Position in its space's reference set; null when none.")
    nb201_index: int | None = Field(None, description="The official NB201 index (NB201 archs only).")
    latency_ms: float = Field(description="Measured where known, else predicted.")
    std_ms: float | None = Field(
        description="predicted archs: the predictor's predictive standard deviation of latency_ms; null for measured."
    )
    source: Literal["measured", "predicted"]


class RankResponse(BaseModel):
    """Archs of a space ordered fastest first on a device, under the device's conditions."""

    device: str
    space: str
    conditions: ConditionsOut
    items: list[RankItem]


class KeyCreate(Strict):
    """A new API key: its name and scopes."""

    name: str = Field(
        min_length=KEY_NAME_BOUNDS["ge"],
        max_length=KEY_NAME_BOUNDS["le"],
        description="how the audit log names the key's actions: one no unrevoked key has (else 409)",
    )
    scopes: list[Scope] = Field(min_length=1)


class KeyCreated(BaseModel):
    """A new API key, with its secret (shown once)."""

    id: int
    name: str
    scopes: list[str]
    key: str


class KeyOut(BaseModel):
    """An API key as listed (no secret)."""

    id: int
    name: str
    scopes: list[str]
    created_at: UtcDatetime
    revoked: bool
