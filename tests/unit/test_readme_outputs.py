"""#15 items 6-7: what the documentation's shell snippets (README.md and ``docs/*.md``) write lands outside the
checkout or in a folder git ignores (an enrollment token or a results file never shows up in ``git status``), and no
snippet passes a key on the command line (``ps`` shows those to every user; the README says so)."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import ROOT
from tests.integration.test_readme_snippets import doc_snippets

WRITES = re.compile(r"(?:--(?:out|json|dump)\s+|>\s*)([^\s|;&)]+)")


def _written() -> list[tuple[str, str]]:
    return [(s.where, target) for s in doc_snippets() if s.language == "sh" for target in WRITES.findall(s.code)]


def test_snippets_write_only_outside_the_checkout_or_into_ignored_folders():
    written = _written()
    assert len(written) >= 5, written  # token, CSVs, pickles
    assert {"build/transfer.json", "build/dump/"} <= {target for _, target in written}  # eval transfer's outputs
    for where, target in written:
        if target.startswith(("~/", "/", "$HOME/")) or target == "/dev/null":
            continue
        ignored = subprocess.run(["git", "check-ignore", "-q", target], cwd=ROOT, check=False).returncode == 0
        assert ignored, f"{where} writes {target} into the checkout where git does not ignore it"


def test_no_snippet_passes_a_key_on_the_command_line():
    for snippet in doc_snippets():
        assert "--key" not in snippet.code, f"{snippet.where}: use LATFARM_API_KEY, not --key"


def _transcript() -> list[str]:
    """The README's ``make up`` transcript, line by line."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("```\n$ make up\n") + 4 :]
    return block[: block.index("```")].splitlines()


def test_the_readme_transcript_is_the_first_runs_and_its_summary_is_latfarm_ups(capsys):
    """The transcript shows the progress bar of a first run (a second run says 'reused' instead) and is labelled so;
    its summary is what ``latfarm up`` prints, the key elided as the README says."""
    from latfarm.services.cli.up import _summary

    text = (ROOT / "README.md").read_text()
    lines = _transcript()
    assert any("━" in line and "10/10" in line for line in lines) and not any("reused" in line for line in lines)
    label = text[: text.index("```\n$ make up\n")].rstrip().rsplit("\n\n", 1)[-1]
    assert "first run" in label and "second run" not in label and "key is elided" in label
    assert not re.search(r"lf_admin_[A-Za-z0-9]{6,}", text), "a whole key in the README"

    _summary(
        "http://127.0.0.1:8000", "lf_admin_...", "local", {"samples": 10, "metrics": {"fit_mean_abs_rel_error": 0.014}}
    )
    printed = capsys.readouterr().out.strip().splitlines()
    start = lines.index(printed[0])
    assert lines[start : start + len(printed)] == printed
