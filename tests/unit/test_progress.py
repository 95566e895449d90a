"""The command line's progress bar: on a terminal only."""

from __future__ import annotations

import pytest

from latfarm.services.core.progress import count_bar


def _run_bar(transient: bool) -> None:
    with count_bar(transient=transient) as bar:
        task = bar.add_task("measuring", total=3)
        bar.advance(task, 3)


@pytest.mark.parametrize("transient", [True, False])
def test_no_bar_and_no_blank_line_when_stderr_is_no_terminal(transient, capfd, monkeypatch):
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)
    _run_bar(transient)
    assert capfd.readouterr() == ("", "")


def test_a_terminal_shows_the_bar(capfd, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: a terminal, whatever stderr is
    _run_bar(transient=False)
    assert "measuring" in capfd.readouterr().err
