"""Typer options that several command modules share, and the rules every option's help follows.

Help-text rules (tests/unit/test_cli_help.py checks them on every command and group): every parameter has a help
text; a default is shown once, as ``[default: X]``; an option whose real default is "someone else's" (the agent's,
the server's, the device's) defaults to None and says so in words; square brackets in help texts are escaped
(``\\[``), since the help is rich markup and ``[word]`` would vanish. ``Command`` and ``Group`` (every command's
class) show boolean flags, typer's own ``--help`` and completion options included, without a value type, an
option's names as ``--a, --b``, and arguments by their name in capitals (``DEVICE ARCHS...``, ``[ARCHS]...`` when
optional), in the usage line and the arguments panel, and each paragraph of a command's docstring as one flowing
paragraph.

A number with bounds is checked by ``bounded`` (or ``setting_bounds``, ``condition_option``) against the bounds'
one home, the same the server applies, and refused as a usage error in the API's wording (``common.ranges``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import typer
from typer._click import Context, HelpFormatter, Parameter
from typer._click.core import ParameterSource
from typer._click.exceptions import BadParameter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from latfarm.common.ranges import WORDS, not_of_kind, number, out_of_range, within
from latfarm.predictor import nb201
from latfarm.predictor.spaces import SPACES, UnknownSpace, get_space
from latfarm.services.domain.conditions import PRECISIONS, RANGES

DataDir = typer.Option(
    None, "--data-dir", show_default="latfarm-data", help="Folder for the SQLite file, artifacts, keys."
)
DbUrl = typer.Option(None, "--db", show_default="SQLite file in the data folder", help="SQLAlchemy URL.")
# the three arch forms a command line takes (``measure_results.arch_values``)
ARCHS_HELP = (
    "Arch strings, index lists ('\\[0,1,2,3,4,0]', quoted: one choice per position) or positions in the space's "
    "reference set (NB201: official indices)."
)


def _registered_space(name: str | None) -> str | None:
    """``--space``: a registered space (``predictor.spaces.SPACES``), else a usage error naming the known ones; None
    (not given, no default) passes."""
    if name is None:
        return None
    try:
        return get_space(name).name
    except UnknownSpace as err:
        raise typer.BadParameter(str(err)) from err


def among(known: Sequence[str]) -> Callable[[str | None], str | None]:
    """An option callback for a fixed set of values, ``known`` (their one home, imported with the command
    module): the value when the set holds it, else a usage error listing them; None (not given) passes."""

    def checked(value: str | None) -> str | None:
        if value is not None and value not in known:
            raise typer.BadParameter(f"must be one of {', '.join(known)}, got {value!r}")
        return value

    return checked


def one_of(module: str, name: str) -> Callable[[str | None], str | None]:
    """``among`` the values ``module.name`` (their one home, in a module of an extra: imported only when the
    command runs). Without the extra the value passes: the command then names the missing extra in one line."""

    def checked(value: str | None) -> str | None:
        try:
            known = getattr(importlib.import_module(module), name)
        except ImportError:
            return value
        return among(known)(value)

    return checked


MODEL_FORMATS_MODULE = "latfarm.services.domain.network_export"  # the home of a model --format's values


def check_graph(space: str, graph: str | None) -> None:
    """``--graph``: one of ``space``'s graphs (``predictor.spaces``), else a usage error listing them; None (not
    given) passes. Called in the command's body: ``--space`` is read by then, whatever the order given."""
    graphs = get_space(space).graphs
    if graph is not None and graph not in graphs:
        raise typer.BadParameter(
            f"must be one of {', '.join(graphs)} (the graphs of {space}), got {graph!r}", param_hint="'--graph'"
        )


N = TypeVar("N", int, float)


def device_names(value: str | list[str] | None) -> str | list[str] | None:
    """A callback of a device name argument or option (one name or a list): each name under the device-name rule
    (``core.names``, the server's), else a usage error in the server's wording; None (not given) passes."""
    from latfarm.services.core.names import is_device_name, refusal

    for name in [value] if isinstance(value, str) else value or []:
        if not is_device_name(name):
            raise typer.BadParameter(refusal(name))
    return value


DeviceName = typer.Argument(..., callback=device_names, help="Device name.")


def help_folder(path: Path | None) -> Path | None:
    """``up --datasets``, ``pretrain --data``: a HELP folder (``dataset_path``), else a usage error; None (not
    given) passes."""
    if path is not None:
        dataset_path(path, "help")
    return path


def dataset_path(path: Path, fmt: str, hint: str | None = None) -> Path:
    """A dataset path given on the command line, of the shape ``fmt`` reads: a HELP folder
    (``datasets.help.latency_files``) for ``help``, a file for the others; else a usage error (of ``hint``, e.g.
    ``'PATH'``) saying why. What a file holds is the importer's to say. Without the server extra the path passes:
    the command then names the extra."""
    try:
        from latfarm.services.datasets.help import latency_files
        from latfarm.services.datasets.rows import DatasetError
    except ImportError:
        return path
    if fmt != "help":
        if path.is_dir():
            raise typer.BadParameter(f"{path} is a folder; --format {fmt} reads a file", param_hint=hint)
        return path
    try:
        latency_files(path)
    except DatasetError as err:
        raise typer.BadParameter(str(err), param_hint=hint) from err
    return path


def batch_ids(values: list[str]) -> list[str]:
    """A callback of a batch id list: each of the form the server issues (``core.names``), else a usage error (in a
    URL path a malformed id would name another route)."""
    from latfarm.services.core.names import id_refusal, is_id

    for value in values:
        if not is_id(value):
            raise typer.BadParameter(id_refusal(value))
    return values


def batch_arguments(help_text: str) -> Any:
    """The ``BATCH...`` argument: batch ids of the form the server issues (``batch_ids``), with ``help_text``."""
    return typer.Argument(..., metavar="BATCH...", callback=batch_ids, help=help_text)


def refuse_beside(ctx: Context, flag: str, names: Sequence[str], why: str) -> None:
    """Refuse as a usage error (exit 2, ``Invalid value for <flag>``) the options among ``names`` (parameter names)
    given on the command line beside ``flag``, which makes them meaningless: ``--cancel starts no adaptation: drop
    --samples, --no-wait``; a flag pair by the side given (``--no-wait``)."""
    given = [
        param.opts[0] if ctx.params[param.name] or not param.secondary_opts else param.secondary_opts[0]
        for param in ctx.command.params
        if param.name in names and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise typer.BadParameter(f"{why}: drop {', '.join(given)}", param_hint=flag)


def checked_archs(given: Sequence[str | int | list[int]], space: str, hint: str = "'ARCHS...'") -> list[str]:
    """Archs (``measure_results.arch_values``' forms) as canonical strings of ``space``
    (``measure_results.canonical_archs``); a bad one a usage error of ``hint`` naming it (``archs[i]: ...``, as the
    server does)."""
    from latfarm.predictor.spaces import ArchError
    from latfarm.services.cli.measure_results import canonical_archs

    try:
        return canonical_archs(given, space)
    except ArchError as err:
        raise typer.BadParameter(str(err), param_hint=hint) from err


def bounded(bounds: Mapping[str, float], unit: str = "") -> Callable[[N | None], N | None]:
    """An option callback for a number within ``bounds`` (pydantic's names, ``{"ge": 1, "le": 1000}``, read from
    their one home: what the server refuses, the command refuses first): outside them a usage error in the API's
    wording (``must be between 1 and 1000, got 0``); None (not given) passes."""

    def checked(value: N | None) -> N | None:
        if value is None or within(value, bounds):
            return value
        raise typer.BadParameter(out_of_range(number(value), bounds, unit))

    return checked


def setting_bounds(name: str) -> Callable[[int | None], int | None]:
    """``bounded`` for the server setting ``name`` (``core.config.Settings``, imported when the command runs: the
    bounds its field declares). Without the server extra the value passes: the command then names the extra."""

    def checked(value: int | None) -> int | None:
        try:
            from latfarm.services.core.config import Settings
        except ImportError:
            return value
        return bounded(Settings.bounds(name))(value)

    return checked


def span(bounds: Mapping[str, float]) -> str:
    """``bounds`` for a help text: ``1-1000`` (at least and at most), else in words (``greater than 0, at most
    3600``)."""
    if set(bounds) == {"ge", "le"}:
        return f"{number(bounds['ge'])}-{number(bounds['le'])}"
    return ", ".join(f"{WORDS[name]} {number(bound)}" for name, bound in bounds.items())


def bounded_option(default: Any, flag: str, bounds: Mapping[str, float], help_text: str, **option: Any) -> Any:
    """``flag`` (typer's other ``option`` settings as given), refused outside ``bounds`` (``bounded``) before the
    command runs; the help is ``help_text`` and the range (``Timed runs per round, 1-1000.``)."""
    return typer.Option(default, flag, callback=bounded(bounds), help=f"{help_text}, {span(bounds)}.", **option)


def condition_option(field: str, help_text: str, default: int | None = None, show_default: str | bool = True) -> Any:
    """The option of the measurement condition ``field`` (``batch_size``: ``--batch-size``), refused outside its
    bounds (``domain.conditions.RANGES``) before the command runs; the help is ``help_text`` and the range."""
    flag = "--" + field.replace("_", "-")
    return bounded_option(default, flag, RANGES[field], help_text, show_default=show_default)


def precision_option(help_text: str = "", default: str | None = None, show_default: str | bool = True) -> Any:
    """``--precision``, one of the conditions' precisions (``domain.conditions.PRECISIONS``) before the command runs
    (a usage error listing them); the help lists them, then ``help_text``."""
    return typer.Option(
        default,
        "--precision",
        callback=among(PRECISIONS),
        show_default=show_default,
        help=" | ".join(PRECISIONS) + help_text,
    )


def space_option(help_text: str, default: str | None = nb201.SPACE, show_default: str | bool = True) -> Any:
    """``--space`` (``default``: NB201; None: not given, for a command whose input may name its own) with
    ``help_text``, checked against the registered spaces before the command runs (a usage error, exit 2); the help
    ends with their names."""
    names = " | ".join(sorted(SPACES))
    return typer.Option(
        default, "--space", callback=_registered_space, show_default=show_default, help=f"{help_text}: {names}."
    )


# export data's and export device's (one export, from the database or from a server)
ExportFormat = typer.Option(
    "csv", "--format", callback=one_of("latfarm.services.datasets", "EXPORT_FORMATS"), help="csv | latbench"
)
ExportOut = typer.Option(..., "--out", help="Output file.")
ExportSpace = space_option("Search space of the exported archs")


def adapt_rule(rule: Literal["check_samples", "check_calibration"]) -> Callable[[int | None], int | None]:
    """An option callback: the value under the adapt loop's rule ``domain.samples.<rule>`` before any request, a
    rule's ``AdaptError`` a usage error; None (not given) passes."""

    def checked(value: int | None) -> int | None:
        from latfarm.services.domain import samples

        try:
            return None if value is None else getattr(samples, rule)(value)
        except samples.AdaptError as err:
            raise typer.BadParameter(str(err)) from err

    return checked


WaitTimeout = typer.Option(
    3600.0,
    "--timeout",
    callback=bounded({"gt": 0}),
    help="Seconds to wait at most, more than 0 (then the jobs stay queued).",
)


CALIBRATE_HELP = (
    "Also measure R random other archs, fitted too, whose errors calibrate the predicted std_ms: 0 or 10-200."
)
Calibrate = typer.Option(0, "--calibrate", callback=adapt_rule("check_calibration"), help=CALIBRATE_HELP)
SAMPLES_HELP = "K archs to measure for adapting the predictor, 3-200."
Samples = typer.Option(10, "--samples", callback=adapt_rule("check_samples"), help=SAMPLES_HELP)
# ``latfarm up``'s: not given, the device's active adaptation is reused whatever its K and R
UpSamples = typer.Option(
    None,
    "--samples",
    callback=adapt_rule("check_samples"),
    show_default="10",
    help=f"{SAMPLES_HELP} Another K adapts again.",
)
UpCalibrate = typer.Option(
    None,
    "--calibrate",
    callback=adapt_rule("check_calibration"),
    show_default="0",
    help=f"{CALIBRATE_HELP} Another R adapts again.",
)


@contextmanager
def _as_shown(params: Sequence[Parameter]) -> Iterator[None]:
    """While the help is rendered: flags show no value type (typer would show ``<bool>``, which reads as if the
    flag took a value) and an option's long names are joined by ``", "`` (typer joins them with a bare comma)."""
    saved = [(param, param.opts, param.metavar) for param in params]
    try:
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
            long_names = [name for name in param.opts if name.startswith("--")]
            if len(long_names) > 1:
                param.opts = [", ".join(long_names), *(name for name in param.opts if name not in long_names)]
        yield
    finally:
        for param, opts, metavar in saved:
            param.opts, param.metavar = opts, metavar


@contextmanager
def _reflowed(command: TyperCommand | TyperGroup) -> Iterator[None]:
    """While the help is rendered: each paragraph of the command's docstring on one line (typer keeps a
    paragraph's line breaks after the first, and the terminal then breaks those lines again, raggedly)."""
    saved = command.help
    if saved:
        paragraphs = inspect.cleandoc(saved).split("\n\n")
        command.help = "\n\n".join(" ".join(line.strip() for line in part.splitlines()) for part in paragraphs)
    try:
        yield
    finally:
        command.help = saved


def _argument_name(param: TyperArgument) -> str:
    """An argument as help shows it: its name in capitals, ``...`` when it takes several."""
    return (param.name or "").upper() + ("..." if param.nargs != 1 else "")


# The extra that brings a module the base (agent) install lacks, where it is not the command's own extra.
MODULE_EXTRAS = {"ai_edge_litert": "litert", "litert_torch": "tflite"}


class Command(TyperCommand):
    """A typer command whose help follows the rules above; run without a module of its ``extra`` (an agent-only
    install), it says in one line which extra to install and exits 1; stopped by Ctrl-C, it says so in one line and
    exits 130."""

    extra: str | None = None  # the package extra the command needs beyond the base install (None: none)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Typer's command, its arguments named as help shows them (``DEVICE``, ``ARCHS...``) in the help, the usage
        line and parse errors (``'DEVICE'``), unless given a metavar of their own."""
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar is None:
                param.metavar = _argument_name(param)

    def invoke(self, ctx: Context) -> Any:
        """Run the command; a third-party module missing from this install exits 1 naming the extra to install,
        Ctrl-C that the command does not handle itself prints ``<command>: interrupted`` and exits 130."""
        from latfarm.services.cli.errors import interrupted

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise interrupted(f"{ctx.command_path}: interrupted") from None
        except ModuleNotFoundError as err:
            top = (err.name or "").partition(".")[0]
            extra = MODULE_EXTRAS.get(top, self.extra)
            if extra is None or top in ("", "latfarm"):
                raise
            from latfarm.services.core.extras import install_command

            raise SystemExit(
                f"{ctx.command_path}: needs the {extra} extra (no module {top!r}): {install_command(extra)}"
            ) from err

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        """Typer's parsing, a negative number among the arguments read as one (typer would take it for an option:
        ``as_arguments``), so that the argument's own check refuses it in its words (the numbers commands take as
        arguments are reference positions); a value typer cannot convert is refused in the API's words (``must be a
        whole number, got 'abc'``) rather than pydantic's."""
        try:
            return super().parse_args(ctx, as_arguments(self.get_params(ctx), args))
        except BadParameter as err:
            errors = getattr(err.__cause__, "errors", None)  # typer converts values with pydantic
            if type(err.__cause__).__name__ == "ValidationError" and callable(errors) and errors():
                first = errors()[0]
                err.message = not_of_kind(first["type"], repr(first["input"])) or err.message
            raise

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line's pieces: typer's, its arguments shown by the rules above (typer writes ``{device}``)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = str(param.metavar)  # set when the command is built
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Typer's help, its options shown by the rules above."""
        with _as_shown(self.get_params(ctx)), _reflowed(self):
            super().format_help(ctx, formatter)


NEGATIVE = re.compile(r"-\d+(\.\d+)?")  # a negative number, which the parser would take for an option


def as_arguments(params: Sequence[Parameter], args: list[str]) -> list[str]:
    """``args`` with the arguments among its tokens before ``--`` moved behind one, in their order, when a negative
    number is among them (the options, each with the value it takes, stay before it): the parser then reads the
    number as an argument, as it does ``predict DEVICE -- -1``. Without a negative number ``args`` as given."""
    split = args.index("--") if "--" in args else len(args)
    head, tail = args[:split], args[split + 1 :]
    if not any(NEGATIVE.fullmatch(token) for token in head):
        return args
    valued = {
        name: param.nargs
        for param in params
        if isinstance(param, TyperOption) and not param.is_flag and not param.count
        for name in param.opts
    }
    options: list[str] = []
    arguments: list[str] = []
    tokens = iter(head)
    for token in tokens:
        if NEGATIVE.fullmatch(token) or not token.startswith("-") or token == "-":
            arguments.append(token)
            continue
        options.append(token)
        for _ in range(valued.get(token, 0)):
            options.extend(value for value in [next(tokens, None)] if value is not None)
    return [*options, "--", *arguments, *tail]


def needs(extra: str) -> type[Command]:
    """The ``Command`` class of commands that need the package extra ``extra``."""
    return type(f"{extra.title()}Command", (Command,), {"extra": extra})


class Group(TyperGroup):
    """A typer group (the app, ``export``, ``eval``) whose help follows the rules above."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Typer's help, its options shown by the rules above."""
        with _as_shown(self.get_params(ctx)), _reflowed(self):
            super().format_help(ctx, formatter)
