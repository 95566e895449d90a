"""Table views (sqladmin ModelViews): search, filters, sorting, pagination; read-only but for deleting agents/jobs."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from markupsafe import Markup, escape
from sqladmin import ModelView, action
from sqladmin._types import _UNSET, UnsetAny
from sqladmin.filters import (
    AllUniqueStringValuesFilter,
    BooleanFilter,
    ForeignKeyFilter,
    OperationColumnFilter,
    StaticValuesFilter,
    get_column_obj,
)
from sqladmin.formatters import BASE_FORMATTERS
from sqladmin.helpers import get_primary_keys
from sqlalchemy import Integer, Select, Subquery, and_, func, or_, select
from sqlalchemy.orm import Session, object_session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse

from latfarm.predictor.spaces import SPACES, ArchError
from latfarm.services.core.clock import as_utc
from latfarm.services.core.errors import NotFound
from latfarm.services.domain import review
from latfarm.services.domain.liveness import is_online, online_cutoff
from latfarm.services.domain.results import statistic_of
from latfarm.services.rpc.callers import CALLERS
from latfarm.services.store.db import transaction
from latfarm.services.store.models import (
    Adaptation,
    AdaptState,
    Agent,
    Arch,
    Artifact,
    AuditEntry,
    Device,
    Job,
    JobState,
    Measurement,
    Source,
)

PAGE_SIZES = [25, 50, 100, 200]
MAX_WHOLE = 2**63 - 1  # the largest value an integer column holds (BIGINT)
ALL = ("", "__all")  # a filter's values that select every row


def whole(value: str) -> int | None:
    """``value`` (ASCII digits, maybe signed) as an int an integer column can hold, else None."""
    digits = value.strip().removeprefix("-")
    return int(value) if digits.isascii() and digits.isdigit() and int(digits) <= MAX_WHOLE else None


def whole_number(value: str, parameter: str) -> int:
    """``value`` as ``whole`` reads it; 400 naming filter ``parameter`` when it is none."""
    number = whole(value)
    if number is None:
        raise HTTPException(400, f"filter {parameter}: {value!r} is not a whole number")
    return number


def actor_of(request: Request) -> str:
    """Who an admin request acts as, for the audit log: the logged-in key's name."""
    return request.session.get("user_id") or "admin-ui"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``12 s ago`` style age of a UTC time, or ``never``."""
    utc = as_utc(moment)
    if utc is None:
        return "never"
    seconds = int(((now or datetime.now(timezone.utc)) - utc).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def object_session_of(row: Any) -> Session:
    """The session ``row`` was loaded in (sqladmin's, deleting it)."""
    session = object_session(row)
    if session is None:
        raise RuntimeError(f"{row!r} belongs to no session")
    return session


def _enum_values(enum_cls) -> list[tuple[str, str]]:
    return [(member.value, member.value) for member in enum_cls]


def _device_links(device: Device, _attr: str, request: Request) -> Markup:
    overview = request.url_for("admin:device_overview", device_id=device.id)
    measurements = request.url_for("admin:list", identity="measurement").include_query_params(device_id=device.id)
    return Markup(
        f'{escape(device.name)} <span class="text-muted">·</span> '
        f'<a href="{overview}">overview &amp; predictor</a> '
        f'<span class="text-muted">·</span> <a href="{measurements}">measurements</a>'
    )


class ValuesFilter(AllUniqueStringValuesFilter):
    """Filter by one of a column's distinct values. sqladmin's lookup lists NULL as a choice too, which its template
    then marks active while no filter is set (an unset parameter equals None): NULL is left out."""

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        """ "All", then every distinct non-NULL value."""
        return [
            (value, label) for value, label in await super().lookups(request, model, run_query) if value is not None
        ]


def _flag_badge(label: str, css: str, title: str):
    """A list/detail formatter: a badge named ``label`` on rows whose boolean attribute is set, blank otherwise.
    sqladmin's own boolean cell shows a green tick for True, which reads as "fine", and a red cross on every
    other row."""
    badge = Markup(f'<span class="badge {css}" title="{escape(title)}">{escape(label)}</span>')
    return lambda row, attr: badge if getattr(row, attr) else Markup("")


_unstable_mark = _flag_badge("⚠ unstable", "bg-warning text-dark", "round medians spread too far")
_quarantined_mark = _flag_badge("quarantined", "bg-secondary text-white", "estimates and exports skip this row")
_random_mark = _flag_badge("random", "bg-azure-lt", "drawn at random: its measurement calibrates adaptations' spread")

ARCH_PREFIX = 12  # characters of an arch string shown in a list when the arch has no reference index


def _arch_short(row: Any, _attr: str) -> Markup:
    """A list cell naming the row's arch by space and reference index (``nb201 #1462``), else by the start of its
    string; the whole string is the cell's tooltip (and on the arch's page)."""
    arch: Arch = row.arch
    if arch.reference_index is not None:
        short = f"#{arch.reference_index}"
    else:
        short = arch.arch if len(arch.arch) <= ARCH_PREFIX else arch.arch[:ARCH_PREFIX] + "…"
    return Markup(f'<span title="{escape(arch.arch)}">{escape(arch.space)} {escape(short)}</span>')


def _latency(measurement: Measurement, _attr: str) -> str:
    """The headline latency (ms) and how it was computed (``protocol['statistic']``: min or median; imported rows
    carry none)."""
    statistic = statistic_of(measurement.protocol)
    return f"{measurement.latency_ms:.4g}" + (f" ({statistic})" if statistic else "")


class DeviceFilter(ForeignKeyFilter):
    """Filter rows by device (a ``device_id`` column), listing devices by name; a value that is no id is a 400."""

    def __init__(self, column: Any) -> None:
        super().__init__(column, Device.name, Device, title="Device")

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        """Rows of device id ``value`` (every row for no value)."""
        if value is not None and value not in ALL:
            whole_number(value, self.parameter_name)
        return await super().get_filtered_query(query, value, model)


class YesNoFilter(BooleanFilter):
    """sqladmin's yes / no filter, but a value other than ``true``, ``false`` or all is a 400 (sqladmin showed every
    row, as if unfiltered)."""

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        """Rows whose column is ``value`` (every row for all or no value)."""
        if value is not None and value not in (*ALL, "all", "true", "false"):
            raise HTTPException(400, f"filter {self.parameter_name}: {value!r} is not true, false or all")
        return await super().get_filtered_query(query, value, model)


class CheckedOperationFilter(OperationColumnFilter):
    """sqladmin's operation filter, but an operation the column's type does not offer is ignored and a value an
    integer column cannot hold is a 400 (both were database errors)."""

    async def get_filtered_query(self, query: Select, operation: str, value: Any, model: Any) -> Select:
        """Rows where the column compares to ``value`` by ``operation`` (every row for no value)."""
        column = get_column_obj(self.column, model)
        if operation not in dict(self.get_operation_options(column)):
            return query
        if value and isinstance(column.type, Integer):
            whole_number(value, self.parameter_name)
        return await super().get_filtered_query(query, operation, value, model)


class ArchFilter:
    """Filter rows with an ``arch_id`` by reference position (NB201: official index) or (part of) an arch string of
    any registered space, typed into a box."""

    has_operator = False
    default_value: UnsetAny = _UNSET  # applied only when the user picks a value
    template = "filters/text_filter.html"
    title = "Arch (index or string, any space)"
    parameter_name = "arch"
    placeholder = "e.g. 1462, nor_conv_3x3~0 or k3_e6-skip-..."

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        """No choices: the value is typed into a box."""
        return []

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        """Rows whose arch has reference position ``value``, or whose arch string contains or canonically equals
        ``value`` in a space that parses it. A number that is no position in any space's reference set (``-1``,
        ``15625``) is a 400 naming the filter and the sets (REST's 422 names the space's)."""
        value = (value or "").strip()
        if not value or value == "__all":
            return query
        if re.fullmatch(r"-?\d+", value, flags=re.ASCII):
            position = whole_number(value, self.parameter_name)
            sizes = {space.name: len(space.reference_set() or ()) for space in SPACES.values()}
            if not any(0 <= position < size for size in sizes.values()):
                sets = ", ".join(f"{name}: 0..{size - 1}" for name, size in sizes.items() if size)
                outside = f"reference position {position} is outside every space's reference set ({sets})"
                raise HTTPException(400, f"filter {self.parameter_name}: {outside}")
            archs = select(Arch.id).where(Arch.reference_index == position)
        else:
            clauses = [Arch.arch.contains(value)]
            for space in SPACES.values():
                try:
                    clauses.append(and_(Arch.space == space.name, Arch.arch == space.canonical(value)))
                except ArchError:
                    continue
            archs = select(Arch.id).where(or_(*clauses))
        return query.where(model.arch_id.in_(archs))


class SpaceFilter:
    """Filter rows with an ``arch_id`` by their arch's search space (the registered spaces)."""

    has_operator = False
    default_value: UnsetAny = _UNSET  # applied only when the user picks a value
    template = "sqladmin/filters/lookup_filter.html"
    title = "Space"
    parameter_name = "space"

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        """All, then every registered space."""
        return [("__all", "All"), *((name, name) for name in SPACES)]

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        """Rows whose arch is of space ``value``; any other value keeps every row."""
        if value not in SPACES:
            return query
        return query.where(model.arch_id.in_(select(Arch.id).where(Arch.space == value)))


class OnlineFilter:
    """Agents online or offline (``domain.liveness``)."""

    has_operator = False
    default_value: UnsetAny = _UNSET  # applied only when the user picks a value
    template = "sqladmin/filters/lookup_filter.html"
    title = "Online"
    parameter_name = "online"

    def __init__(self, heartbeat_interval_s: float) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s

    async def lookups(self, request: Request, model: Any, run_query: Any) -> list[tuple[str, str]]:
        """The choices: all, online, offline."""
        return [("__all", "All"), ("yes", "Online"), ("no", "Offline")]

    async def get_filtered_query(self, query: Select, value: Any, model: Any) -> Select:
        """Agents online (``yes``) or offline (``no``); any other value keeps every row."""
        cutoff = online_cutoff(self.heartbeat_interval_s)
        if value == "yes":
            return query.where(Agent.last_heartbeat >= cutoff)
        if value == "no":
            return query.where(or_(Agent.last_heartbeat.is_(None), Agent.last_heartbeat < cutoff))
        return query


class ReadOnlyView(ModelView):
    """Base of the table views: read-only, exportable, paged; times to the second."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    export_max_rows = 100_000  # bulk data goes through `latfarm export` instead
    page_size = 25
    page_size_options = PAGE_SIZES
    list_template = "table_list.html"
    column_type_formatters = {**BASE_FORMATTERS, datetime: lambda moment: f"{moment:%Y-%m-%d %H:%M:%S}"}  # UTC

    async def list(self, request: Request) -> Any:
        """sqladmin's page of rows; a query value with a NUL character (which no column holds and PostgreSQL refuses)
        is a 400, and so is a ``page`` that is no whole number 1 or more and a ``pageSize`` other than the list's
        sizes (``PAGE_SIZES``: a page is bounded, whatever sqladmin's version would render); a page past the last
        shows the last. Bad sort values (``sort_query``) and filter values (the filters above) are 400s too."""
        query = request.query_params
        if any("\x00" in value for value in query.values()):
            raise HTTPException(400, "query values may not contain NUL characters")
        page, size = query.get("page"), query.get("pageSize")
        if page and ((number := whole(page)) is None or number < 1):  # empty: not given, as sqladmin reads it
            raise HTTPException(400, f"page: {page!r} is not a page number (a whole number, 1 or more)")
        if size and size not in {str(option) for option in self.page_size_options}:
            sizes = ", ".join(map(str, self.page_size_options))
            raise HTTPException(400, f"pageSize: {size!r} is not one of the page sizes ({sizes})")
        return await super().list(request)

    def sort_query(self, stmt: Select, request: Request) -> Select:
        """sqladmin's sorting; a ``sort`` other than asc or desc, or a ``sortBy`` no sortable column has, is a 400
        naming the value (sqladmin sorted ascending on any other ``sort``)."""
        sort_by, order = request.query_params.get("sortBy"), request.query_params.get("sort", "asc")
        if order not in ("asc", "desc"):
            raise HTTPException(400, f"sort: {order!r} is not asc or desc")
        if sort_by and sort_by not in self._sort_fields:
            raise HTTPException(400, f"sortBy: {sort_by!r} is not a sortable column ({', '.join(self._sort_fields)})")
        return super().sort_query(stmt, request)

    def _stmt_by_identifier(self, identifier: str) -> Select:
        """sqladmin's row-by-id query (details, edit, delete, file pages); an id no row can have (not a whole number
        an integer key holds, a NUL character) is a 404, not a database error."""
        (key,) = get_primary_keys(self.model)
        if "\x00" in identifier or (isinstance(key.type, Integer) and whole(identifier) is None):
            raise HTTPException(404, f"no {self.name.lower()} with id {identifier!r}")
        return super()._stmt_by_identifier(identifier)

    async def get_object_filepath(self, identifier: str, column_name: str) -> Path:
        """sqladmin's file preview and download: no column holds a file, every such page is a 404."""
        raise HTTPException(404, "no column of this table holds a file")

    async def count(self, request: Request, stmt: Select | None = None) -> int:
        """sqladmin counts over the sorted list query: drop the sort, a full sort of a big table for nothing."""
        froms = stmt.get_final_froms() if stmt is not None else []
        if len(froms) == 1 and isinstance(froms[0], Subquery) and isinstance(froms[0].element, Select):
            stmt = select(func.count()).select_from(froms[0].element.order_by(None).subquery())
        return await super().count(request, stmt)


class DeviceAdmin(ReadOnlyView, model=Device):
    """Devices, each with links to its overview page and its measurements."""

    icon = "fa-solid fa-microchip"
    column_list = [Device.id, Device.name, Device.runtime, Device.precision, Device.batch_size, Device.created_at]
    column_searchable_list = [Device.name, Device.hardware, Device.description]
    column_sortable_list = [Device.id, Device.name, Device.runtime, Device.created_at]
    column_default_sort = "name"
    column_filters = [ValuesFilter(Device.runtime), ValuesFilter(Device.precision)]
    column_formatters = {Device.name: _device_links}
    column_formatters_detail = {Device.name: _device_links}


class ArchAdmin(ReadOnlyView, model=Arch):
    """The arch catalogue: archs of every space by string and reference position (NB201: official index)."""

    icon = "fa-solid fa-diagram-project"
    name = "Architecture"
    column_list = [Arch.id, Arch.space, Arch.reference_index, Arch.arch]
    column_labels = {Arch.reference_index: "index"}
    column_searchable_list = [Arch.arch]
    column_sortable_list = [Arch.id, Arch.reference_index, Arch.arch]
    column_filters = [ValuesFilter(Arch.space), CheckedOperationFilter(Arch.reference_index)]


class ArtifactAdmin(ReadOnlyView, model=Artifact):
    """Exported model files, by arch and format."""

    icon = "fa-solid fa-file-zipper"
    column_list = [Artifact.sha256, Artifact.arch, Artifact.format, Artifact.size_bytes, Artifact.created_at]
    column_searchable_list = [Artifact.sha256, Artifact.format]
    column_sortable_list = [Artifact.created_at, Artifact.size_bytes, Artifact.format]
    column_default_sort = (Artifact.created_at, True)
    column_filters = [ValuesFilter(Artifact.format), SpaceFilter(), ArchFilter()]
    column_formatters = {Artifact.arch: _arch_short}


class JobAdmin(ReadOnlyView, model=Job):
    """The job queue, newest first (then last finished first: a batch's jobs share their creation time); stuck or
    unwanted jobs may be deleted. State comes first, the long ids last; a badge marks the jobs whose arch was drawn
    at random (``Job.drawn_at_random``), which a filter selects."""

    icon = "fa-solid fa-list-check"
    can_delete = True
    column_list = [
        Job.state,
        Job.device,
        Job.arch,
        Job.drawn_at_random,
        Job.attempts,
        Job.created_at,
        Job.finished_at,
        Job.format,
        Job.requested_by,
        Job.lease_owner,
        Job.id,
    ]
    column_searchable_list = [Job.id, Job.batch_id, Job.requested_by, Job.error]
    column_sortable_list = [Job.created_at, Job.finished_at, Job.state, Job.attempts]
    column_default_sort = [(Job.created_at, True), (Job.finished_at, True), (Job.id, False)]
    column_filters = [
        DeviceFilter(Job.device_id),
        StaticValuesFilter(Job.state, _enum_values(JobState), title="State"),
        ValuesFilter(Job.format),
        SpaceFilter(),
        ArchFilter(),
        YesNoFilter(Job.drawn_at_random, title="Drawn at random"),
    ]
    column_labels = {Job.drawn_at_random: "drawn at random"}
    column_formatters = {Job.arch: _arch_short, Job.drawn_at_random: _random_mark}
    column_formatters_detail = {Job.drawn_at_random: _random_mark}

    async def on_model_delete(self, model: Any, request: Request) -> None:
        """A deleted job is audited under the admin's key name, in the deleting transaction."""
        review.record_delete(object_session_of(model), actor_of(request), model, "admin UI")


def _optional_figure(name: str, spec: str):
    """A list-column formatter: the measurement's ``name`` in format ``spec``, blank when not recorded."""
    return lambda m, _a: "" if getattr(m, name) is None else format(getattr(m, name), spec)


class MeasurementAdmin(ReadOnlyView, model=Measurement):
    """Imported data is not edited by hand: measurements are read-only, but an admin may quarantine (and release)
    bogus rows, which estimates and exports then skip (``domain.review``, audited).

    The list shows, first, the headline ``latency_ms`` with its statistic, badges on unstable and quarantined rows
    and the arch by space and reference index: these fit 1400 px; then the conditions it was measured under (their
    key) and the cold-start figures. The detail page shows every figure, ``median_ms``, spread, runtime, agent and the
    whole arch string included.
    """

    icon = "fa-solid fa-stopwatch"
    column_list = [
        Measurement.id,
        Measurement.device,
        Measurement.latency_ms,
        Measurement.unstable,
        Measurement.quarantined,
        Measurement.arch,
        Measurement.source,
        Measurement.dataset,
        Measurement.conditions_key,
        Measurement.std_ms,
        Measurement.session_create_ms,
        Measurement.first_inference_ms,
        Measurement.created_at,
    ]
    column_labels = {Measurement.latency_ms: "latency_ms (statistic)"}
    column_searchable_list = [
        Measurement.dataset,
        Measurement.runtime,
        Measurement.agent_id,
        Measurement.job_id,
        Measurement.conditions_key,
    ]
    column_sortable_list = [
        Measurement.id,
        Measurement.latency_ms,
        Measurement.std_ms,
        Measurement.created_at,
    ]
    column_default_sort = (Measurement.id, True)
    column_filters = [
        DeviceFilter(Measurement.device_id),
        StaticValuesFilter(Measurement.source, _enum_values(Source), title="Source"),
        ValuesFilter(Measurement.dataset),
        ValuesFilter(Measurement.conditions_key, title="Conditions"),
        YesNoFilter(Measurement.unstable),
        SpaceFilter(),
        YesNoFilter(Measurement.quarantined),
        ArchFilter(),
    ]
    column_formatters = {
        Measurement.latency_ms: _latency,
        Measurement.unstable: _unstable_mark,
        Measurement.quarantined: _quarantined_mark,
        Measurement.arch: _arch_short,
        Measurement.std_ms: _optional_figure("std_ms", ".3g"),
        Measurement.session_create_ms: _optional_figure("session_create_ms", ".4g"),
        Measurement.first_inference_ms: _optional_figure("first_inference_ms", ".4g"),
    }
    column_formatters_detail = {Measurement.unstable: _unstable_mark, Measurement.quarantined: _quarantined_mark}

    @action("quarantine", "Quarantine", "Estimates and exports will skip the selected measurements.")
    async def quarantine(self, request: Request) -> RedirectResponse:
        """Quarantine the selected rows (``pks``), audited under the admin's key name."""
        return await self._review(request, quarantined=True)

    @action("release", "Release from quarantine", "Estimates and exports will read the selected measurements again.")
    async def release(self, request: Request) -> RedirectResponse:
        """Release the selected rows (``pks``) from quarantine, audited."""
        return await self._review(request, quarantined=False)

    async def _review(self, request: Request, quarantined: bool) -> RedirectResponse:
        """All selected rows or none: a ``pks`` value that is no whole number is a 400, an unknown id a 404."""
        pks = [pk for pk in request.query_params.get("pks", "").split(",") if pk.strip()]
        ids = [whole(pk) for pk in pks]
        if None in ids:
            raise HTTPException(400, f"pks: {pks[ids.index(None)]!r} is not a measurement id")
        actor = actor_of(request)

        def apply() -> None:
            with transaction(cast("sessionmaker[Session]", self.session_maker)) as session:
                for measurement_id in ids:
                    review.set_quarantined(session, cast(int, measurement_id), quarantined, actor, "admin UI")

        try:
            await run_in_threadpool(apply)
        except NotFound as err:
            raise HTTPException(404, err.message) from err
        return RedirectResponse(request.url_for("admin:list", identity=self.identity), status_code=302)


class AuditAdmin(ReadOnlyView, model=AuditEntry):
    """Who quarantined, released or deleted which measurement, or deleted which job or agent, when, and what it
    held."""

    name_plural = "Audit log"
    icon = "fa-solid fa-clipboard-list"
    column_list = [AuditEntry.at, AuditEntry.actor, AuditEntry.action, AuditEntry.target, AuditEntry.detail]
    column_searchable_list = [AuditEntry.actor, AuditEntry.target]
    column_sortable_list = [AuditEntry.at, AuditEntry.actor, AuditEntry.action]
    column_default_sort = (AuditEntry.at, True)
    column_filters = [ValuesFilter(AuditEntry.action), ValuesFilter(AuditEntry.actor)]


class AdaptationAdmin(ReadOnlyView, model=Adaptation):
    """Predictor adaptations per device (by name): state, samples and fit metrics."""

    icon = "fa-solid fa-wand-magic-sparkles"
    column_list = [
        Adaptation.id,
        Adaptation.device,
        Adaptation.state,
        Adaptation.samples,
        Adaptation.strategy,
        Adaptation.checkpoint,
        Adaptation.created_at,
        Adaptation.activated_at,
    ]
    column_details_exclude_list = [Adaptation.params]
    column_searchable_list = [Adaptation.id, Adaptation.strategy, Adaptation.error]
    column_sortable_list = [Adaptation.created_at, Adaptation.activated_at, Adaptation.state, Adaptation.samples]
    column_default_sort = (Adaptation.created_at, True)
    column_filters = [
        DeviceFilter(Adaptation.device_id),
        StaticValuesFilter(Adaptation.state, _enum_values(AdaptState), title="State"),
    ]


def agent_view(heartbeat_interval_s: float) -> type[ModelView]:
    """The agents table, with whether each is online (``domain.liveness``)."""

    def _heartbeat(agent: Agent, _attr: str) -> Markup:
        beat = as_utc(agent.last_heartbeat)
        online = is_online(agent, heartbeat_interval_s)
        badge = "bg-green-lt" if online else "bg-secondary-lt"
        return Markup(f'<span class="badge {badge}">{"online" if online else "offline"}</span> {escape(ago(beat))}')

    class AgentAdmin(ReadOnlyView, model=Agent):
        icon = "fa-solid fa-robot"
        can_delete = True
        column_list = [
            Agent.id,
            Agent.name,
            Agent.device,
            Agent.owner,
            Agent.state,
            Agent.last_heartbeat,
            Agent.registered_at,
        ]
        column_details_exclude_list = [Agent.credential_hash]
        column_searchable_list = [Agent.id, Agent.name, Agent.owner]
        column_sortable_list = [Agent.name, Agent.state, Agent.last_heartbeat, Agent.registered_at]
        column_default_sort = (Agent.last_heartbeat, True)
        column_filters = [
            DeviceFilter(Agent.device_id),
            ValuesFilter(Agent.state),
            OnlineFilter(heartbeat_interval_s),
        ]
        column_formatters = {Agent.last_heartbeat: _heartbeat}
        column_formatters_detail = {Agent.last_heartbeat: _heartbeat}

        async def on_model_delete(self, model: Any, request: Request) -> None:
            """A deleted agent is audited under the admin's key name, in the deleting transaction."""
            review.record_delete(object_session_of(model), actor_of(request), model, "admin UI")

        async def after_model_delete(self, model: Any, request: Request) -> None:
            """A removed agent's credential stops working at once on this server, not after the auth cache."""
            CALLERS.forget_agent(model.id)

    return AgentAdmin


def model_views(heartbeat_interval_s: float) -> list[type[ModelView]]:
    """The table views in menu order; the agents' view judges liveness by ``heartbeat_interval_s``."""
    return [
        DeviceAdmin,
        agent_view(heartbeat_interval_s),
        ArchAdmin,
        JobAdmin,
        MeasurementAdmin,
        ArtifactAdmin,
        AdaptationAdmin,
        AuditAdmin,
    ]
