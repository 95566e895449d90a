from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Statistic(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATISTIC_UNSPECIFIED: _ClassVar[Statistic]
    STATISTIC_MIN: _ClassVar[Statistic]
    STATISTIC_MEDIAN: _ClassVar[Statistic]

class ErrorClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CLASS_UNSPECIFIED: _ClassVar[ErrorClass]
    ERROR_CLASS_LOAD: _ClassVar[ErrorClass]
    ERROR_CLASS_RUN: _ClassVar[ErrorClass]
    ERROR_CLASS_TIMEOUT: _ClassVar[ErrorClass]
    ERROR_CLASS_WRONG_OUTPUT: _ClassVar[ErrorClass]
    ERROR_CLASS_UNSTABLE: _ClassVar[ErrorClass]
    ERROR_CLASS_FETCH: _ClassVar[ErrorClass]
    ERROR_CLASS_UNSUPPORTED: _ClassVar[ErrorClass]
STATISTIC_UNSPECIFIED: Statistic
STATISTIC_MIN: Statistic
STATISTIC_MEDIAN: Statistic
ERROR_CLASS_UNSPECIFIED: ErrorClass
ERROR_CLASS_LOAD: ErrorClass
ERROR_CLASS_RUN: ErrorClass
ERROR_CLASS_TIMEOUT: ErrorClass
ERROR_CLASS_WRONG_OUTPUT: ErrorClass
ERROR_CLASS_UNSTABLE: ErrorClass
ERROR_CLASS_FETCH: ErrorClass
ERROR_CLASS_UNSUPPORTED: ErrorClass

class DeviceDescriptor(_message.Message):
    __slots__ = ("hostname", "cpu_model", "cpu_cores", "cpu_max_mhz", "memory_bytes", "os", "os_release", "machine", "python", "runtimes", "onnx_providers", "litert_delegates", "formats", "extra")
    class RuntimesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_CORES_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_MHZ_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_RELEASE_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    ONNX_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    LITERT_DELEGATES_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    cpu_model: str
    cpu_cores: int
    cpu_max_mhz: float
    memory_bytes: int
    os: str
    os_release: str
    machine: str
    python: str
    runtimes: _containers.ScalarMap[str, str]
    onnx_providers: _containers.RepeatedScalarFieldContainer[str]
    litert_delegates: _containers.RepeatedScalarFieldContainer[str]
    formats: _containers.RepeatedScalarFieldContainer[str]
    extra: _containers.ScalarMap[str, str]
    def __init__(self, hostname: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_cores: _Optional[int] = ..., cpu_max_mhz: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., os_release: _Optional[str] = ..., machine: _Optional[str] = ..., python: _Optional[str] = ..., runtimes: _Optional[_Mapping[str, str]] = ..., onnx_providers: _Optional[_Iterable[str]] = ..., litert_delegates: _Optional[_Iterable[str]] = ..., formats: _Optional[_Iterable[str]] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("enrollment_token", "descriptor", "name")
    ENROLLMENT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    enrollment_token: str
    descriptor: DeviceDescriptor
    name: str
    def __init__(self, enrollment_token: _Optional[str] = ..., descriptor: _Optional[_Union[DeviceDescriptor, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("agent_id", "credential", "device", "heartbeat_interval_s", "lease_seconds")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    credential: str
    device: str
    heartbeat_interval_s: int
    lease_seconds: int
    def __init__(self, agent_id: _Optional[str] = ..., credential: _Optional[str] = ..., device: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("job_ids", "state", "descriptor")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    state: str
    descriptor: DeviceDescriptor
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., state: _Optional[str] = ..., descriptor: _Optional[_Union[DeviceDescriptor, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("heartbeat_interval_s", "lost_job_ids")
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    LOST_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_s: int
    lost_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, heartbeat_interval_s: _Optional[int] = ..., lost_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class MeasureSettings(_message.Message):
    __slots__ = ("warmup_runs", "runs_per_round", "rounds", "threads", "timeout_s", "statistic")
    WARMUP_RUNS_FIELD_NUMBER: _ClassVar[int]
    RUNS_PER_ROUND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    warmup_runs: int
    runs_per_round: int
    rounds: int
    threads: int
    timeout_s: float
    statistic: str
    def __init__(self, warmup_runs: _Optional[int] = ..., runs_per_round: _Optional[int] = ..., rounds: _Optional[int] = ..., threads: _Optional[int] = ..., timeout_s: _Optional[float] = ..., statistic: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "space", "arch", "format", "artifact_sha256", "artifact_size", "attempt", "settings", "input_shape", "conditions")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SIZE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    space: str
    arch: str
    format: str
    artifact_sha256: str
    artifact_size: int
    attempt: int
    settings: MeasureSettings
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    conditions: Conditions
    def __init__(self, job_id: _Optional[str] = ..., space: _Optional[str] = ..., arch: _Optional[str] = ..., format: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., artifact_size: _Optional[int] = ..., attempt: _Optional[int] = ..., settings: _Optional[_Union[MeasureSettings, _Mapping]] = ..., input_shape: _Optional[_Iterable[int]] = ..., conditions: _Optional[_Union[Conditions, _Mapping]] = ...) -> None: ...

class Conditions(_message.Message):
    __slots__ = ("space", "resolution", "classes", "batch_size", "precision", "graph")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    GRAPH_FIELD_NUMBER: _ClassVar[int]
    space: str
    resolution: int
    classes: int
    batch_size: int
    precision: str
    graph: str
    def __init__(self, space: _Optional[str] = ..., resolution: _Optional[int] = ..., classes: _Optional[int] = ..., batch_size: _Optional[int] = ..., precision: _Optional[str] = ..., graph: _Optional[str] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("max_jobs", "wait_seconds", "formats")
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    max_jobs: int
    wait_seconds: float
    formats: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_jobs: _Optional[int] = ..., wait_seconds: _Optional[float] = ..., formats: _Optional[_Iterable[str]] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("jobs", "lease_seconds")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    lease_seconds: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class FetchArtifactRequest(_message.Message):
    __slots__ = ("sha256", "offset")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    offset: int
    def __init__(self, sha256: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("data", "offset", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., total_size: _Optional[int] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "runs", "round_medians_ms", "round_spread", "latency_ms", "statistic")
    MEDIAN_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    STD_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_MS_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    ROUND_MEDIANS_MS_FIELD_NUMBER: _ClassVar[int]
    ROUND_SPREAD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p90_ms: float
    runs: int
    round_medians_ms: _containers.RepeatedScalarFieldContainer[float]
    round_spread: float
    latency_ms: float
    statistic: str
    def __init__(self, median_ms: _Optional[float] = ..., mean_ms: _Optional[float] = ..., std_ms: _Optional[float] = ..., min_ms: _Optional[float] = ..., p90_ms: _Optional[float] = ..., runs: _Optional[int] = ..., round_medians_ms: _Optional[_Iterable[float]] = ..., round_spread: _Optional[float] = ..., latency_ms: _Optional[float] = ..., statistic: _Optional[str] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("job_id", "ok", "stats", "session_create_ms", "first_inference_ms", "error_class", "error_message", "unstable", "artifact_sha256", "runtime", "runtime_version", "provider", "threads", "affinity", "settings")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SESSION_CREATE_MS_FIELD_NUMBER: _ClassVar[int]
    FIRST_INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CLASS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UNSTABLE_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    ok: bool
    stats: Stats
    session_create_ms: float
    first_inference_ms: float
    error_class: ErrorClass
    error_message: str
    unstable: bool
    artifact_sha256: str
    runtime: str
    runtime_version: str
    provider: str
    threads: int
    affinity: _containers.RepeatedScalarFieldContainer[int]
    settings: MeasureSettings
    def __init__(self, job_id: _Optional[str] = ..., ok: _Optional[bool] = ..., stats: _Optional[_Union[Stats, _Mapping]] = ..., session_create_ms: _Optional[float] = ..., first_inference_ms: _Optional[float] = ..., error_class: _Optional[_Union[ErrorClass, str]] = ..., error_message: _Optional[str] = ..., unstable: _Optional[bool] = ..., artifact_sha256: _Optional[str] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., provider: _Optional[str] = ..., threads: _Optional[int] = ..., affinity: _Optional[_Iterable[int]] = ..., settings: _Optional[_Union[MeasureSettings, _Mapping]] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("runtime_build", "governor", "freq_mhz_before", "freq_mhz_after", "temp_c_before", "temp_c_after", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUNTIME_BUILD_FIELD_NUMBER: _ClassVar[int]
    GOVERNOR_FIELD_NUMBER: _ClassVar[int]
    FREQ_MHZ_BEFORE_FIELD_NUMBER: _ClassVar[int]
    FREQ_MHZ_AFTER_FIELD_NUMBER: _ClassVar[int]
    TEMP_C_BEFORE_FIELD_NUMBER: _ClassVar[int]
    TEMP_C_AFTER_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    runtime_build: str
    governor: str
    freq_mhz_before: float
    freq_mhz_after: float
    temp_c_before: float
    temp_c_after: float
    extra: _containers.ScalarMap[str, str]
    def __init__(self, runtime_build: _Optional[str] = ..., governor: _Optional[str] = ..., freq_mhz_before: _Optional[float] = ..., freq_mhz_after: _Optional[float] = ..., temp_c_before: _Optional[float] = ..., temp_c_after: _Optional[float] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("results", "provenance")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[Result]
    provenance: Provenance
    def __init__(self, results: _Optional[_Iterable[_Union[Result, _Mapping]]] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ...) -> None: ...

class ResultAck(_message.Message):
    __slots__ = ("job_id", "accepted", "duplicate", "message")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    accepted: bool
    duplicate: bool
    message: str
    def __init__(self, job_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., duplicate: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[ResultAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[ResultAck, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("job_ids", "all_held")
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_HELD_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    all_held: bool
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ..., all_held: _Optional[bool] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...
