"""The mutation report's rule for survivors that only change what a log line says."""

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("mutation_script", Path(__file__).resolve().parents[2] / "scripts" / "mutation.py")
mutation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutation  # its dataclasses look their module up
_spec.loader.exec_module(mutation)

ORIGINAL = '''
def call(self, url):
    if self.attempts > 3:
        logger.warning(
            "giving up on %s after %d attempts",
            url,
            self.attempts,
        )
        return None
    return self.post(url)
'''


@pytest.mark.parametrize("changed", [
    ORIGINAL.replace('"giving up on %s after %d attempts"', '"XXgiving up on %s after %d attemptsXX"'),
    ORIGINAL.replace("            url,\n", "            None,\n"),
    ORIGINAL.replace("            self.attempts,\n", ""),
])
def test_a_change_inside_a_multi_line_logger_call_counts_as_log_only(changed):
    assert mutation.same_but_for_log_calls(ORIGINAL, changed)


@pytest.mark.parametrize("changed", [
    ORIGINAL.replace("self.attempts > 3", "self.attempts >= 3"),
    ORIGINAL.replace("return None", "return ''"),
    ORIGINAL.replace("logger.warning(", "print("),
    ORIGINAL.replace("logger.warning(", "logger.isEnabledFor("),
    ORIGINAL.replace("            self.attempts,\n", "            len(self.attempts),\n"),  # a call that may raise
])
def test_a_change_outside_the_logger_call_is_a_survivor(changed):
    assert not mutation.same_but_for_log_calls(ORIGINAL, changed)


def test_a_change_inside_a_call_made_for_a_log_line_is_not_log_only():
    original = "def f(failed):\n    logger.warning('%d failed', len(failed))\n"
    assert not mutation.same_but_for_log_calls(original, original.replace("len(failed)", "len(None)"))
    assert mutation.same_but_for_log_calls(original, original.replace("'%d failed'", "'XX%d failedXX'"))
    assert mutation.same_but_for_log_calls(original, original.replace("len(failed)", "None"))  # nothing called
    assert mutation.same_but_for_log_calls(original, original.replace("'%d failed', ", ""))  # len(failed) moves up
    assert not mutation.same_but_for_log_calls(original, original.replace("len(failed)", "len(failed), len(failed)"))


def test_no_change_and_unparsable_code_are_not_log_only():
    assert not mutation.same_but_for_log_calls(ORIGINAL, ORIGINAL)
    assert not mutation.same_but_for_log_calls(ORIGINAL, ORIGINAL.replace("return None", "return ("))


def test_a_file_moved_out_of_the_project_leaves_mutmuts_copy_too(tmp_path):
    root, mutants = tmp_path / "project", tmp_path / "project" / "mutants"
    for path in ("campaigns/staff.py", "delivery/approval_requests.py", "tests/test_x.py"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")
    for path in ("campaigns/staff.py", "campaigns/approval_requests.py", "campaigns/approval_requests.py.meta",
                 "delivery/approval_requests.py", "delivery/approval_requests.py.meta", "delivery/approval_requests.py.spans",
                 "tests/test_gone.py", "tests/test_x.py"):
        (mutants / path).parent.mkdir(parents=True, exist_ok=True)
        (mutants / path).write_text("")

    removed = mutation.prune_removed(root, mutants)

    assert sorted(map(str, removed)) == [
        "campaigns/approval_requests.py", "campaigns/approval_requests.py.meta", "tests/test_gone.py",
    ]
    left = sorted(str(path.relative_to(mutants)) for path in mutants.rglob("*") if path.is_file())
    assert left == ["campaigns/staff.py", "delivery/approval_requests.py", "delivery/approval_requests.py.meta",
                    "delivery/approval_requests.py.spans", "tests/test_x.py"]
