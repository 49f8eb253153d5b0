"""Mutation testing of the engine's critical modules: `make mutation`.

mutmut (configured in pyproject.toml, [tool.mutmut]) changes the code one small thing at a time and runs
the fast tests that cover the changed function; a change no test notices "survives". This script
prepares mutmut's working copy, runs it, and prints the score of each critical module with its
survivors. A survivor listed in docs/mutation.md as an equivalent mutant (one that changes no behaviour)
counts as accounted for, and so does one that only changes what a log line says (reported in its own
column: log wording is for whoever reads the logs, while what the engine does is pinned through the rows,
counters, events and answers it leaves behind); every other survivor is a missing test.

    python scripts/mutation.py                 # run everything, then report
    python scripts/mutation.py --report        # report the last run again
    python scripts/mutation.py 'delivery.retry.*'   # run only some mutants (mutmut's name patterns)

Not part of `make test`: a whole run takes 50 to 95 minutes on two cores, two mutants at a time.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENTS_DOC = ROOT / "docs" / "mutation.md"
GOAL = 0.90

# The modules whose every behaviour a test must pin: what sends, classifies, retries, paces, controls,
# recovers, feeds, authenticates, replays and reports, and what people's presses and clicks count for. Kept in step with [tool.mutmut] only_mutate.
CRITICAL = [
    "delivery/sending.py",
    "delivery/installing.py",
    "bots/installs.py",
    "delivery/notifying.py",
    "delivery/one_at_a_time.py",
    "bots/notices.py",
    "campaigns/sign_in.py",
    "bots/transport.py",
    "bots/connector.py",
    "delivery/retry.py",
    "bots/pacing.py",
    "delivery/control.py",
    "delivery/recovery.py",
    "delivery/feeding.py",
    "bots/auth.py",
    "campaigns/api/idempotency.py",
    "delivery/webhooks.py",
    "campaigns/approvals.py",
    "campaigns/states.py",
    "core/channels.py",
    "bots/addresses.py",
    "campaigns/card_actions.py",
    "delivery/card_views.py",
    "delivery/acknowledgements.py",
    "delivery/polls.py",
    "delivery/clicks.py",
    "delivery/follow_ups.py",
    "delivery/follow_up_people.py",
]

# mutmut's exit codes of a mutant's test run (mutmut.stats.status_by_exit_code). A mutant whose tests
# time out, crash the process or fail the type check counts as killed: the change did not go unnoticed.
KILLED = {1, 3, 36, -24, 24, 152, 255, 37, -11, -9}
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_RUN = {None, 2, 34}


@dataclass
class ModuleScore:
    path: str
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    log_only: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    suspicious: list[str] = field(default_factory=list)

    @property
    def judged(self) -> int:
        """Mutants with a verdict: killed, survived, uncovered or explained as equivalent."""
        return (self.killed + len(self.survived) + len(self.no_tests) + len(self.equivalent) + len(self.log_only)
                + len(self.suspicious))

    @property
    def score(self) -> float:
        """Killed or explained, over all judged: an uncovered mutant counts as a survivor."""
        return (self.killed + len(self.equivalent) + len(self.log_only)) / self.judged if self.judged else 0.0


def equivalent_mutants() -> dict[str, str]:
    """Mutant names docs/mutation.md explains as equivalent: lines "- `name`: why"."""
    if not EQUIVALENTS_DOC.exists():
        return {}
    found = {}
    for line in EQUIVALENTS_DOC.read_text().splitlines():
        match = re.match(r"^\s*[-*]\s+`([\w.]+__mutmut_\d+)`\s*[:—-]\s*(.+)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def only_changes_a_log_line(name: str, path: str) -> bool:
    """Whether the mutant changes nothing but what a ``logger.`` call is given (its function and the
    original, whole, as mutmut's own diff reads them)."""
    import libcst
    from mutmut.mutation import diff_apply

    functions = diff_apply.read_functions_from_index(name, path)
    if functions is None:
        module = diff_apply.read_mutants_module(path)
        functions = (diff_apply.read_original_function(module, name), diff_apply.read_mutant_function(module, name))
    original, mutant = (libcst.Module([function]).code for function in functions)
    return same_but_for_log_calls(original, mutant)


LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


def same_but_for_log_calls(original: str, mutant: str) -> bool:
    """Whether two versions of a function differ, and only in what ``logger.<level>(...)`` calls are
    given, however many lines such a call spans. Each version is parsed and the logger calls' arguments
    are set aside: what is left must be the same. An argument of the mutant that calls something
    (``len(failed)``) must also be the original's own, unchanged: a change inside it can raise before
    anything is logged (replacing such an argument by a plain value cannot)."""

    def is_log_call(node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "logger"
                and node.func.attr in LOG_METHODS)

    def calls_something(node: ast.AST) -> bool:
        return any(isinstance(inner, ast.Call) for inner in ast.walk(node))

    class SetAsideLogArguments(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            if is_log_call(node):
                return ast.Call(func=node.func, args=[], keywords=[])
            return self.generic_visit(node)

    def parsed(source: str) -> ast.Module | None:
        try:
            return ast.parse(textwrap.dedent(source))
        except SyntaxError:
            return None

    if original == mutant:
        return False
    before, after = parsed(original), parsed(mutant)
    if before is None or after is None:
        return False
    log_calls = [[node for node in ast.walk(tree) if is_log_call(node)] for tree in (before, after)]
    same_rest = ast.dump(SetAsideLogArguments().visit(before)) == ast.dump(SetAsideLogArguments().visit(after))
    if not same_rest or len(log_calls[0]) != len(log_calls[1]):
        return False
    for was, now in zip(*log_calls):
        # each argument of the mutant's call that calls something is one of the original's (an argument
        # removed before it moves it along, which changes only what is logged)
        unused = Counter(ast.dump(value) for value in [*was.args, *(keyword.value for keyword in was.keywords)])
        for value in [*now.args, *(keyword.value for keyword in now.keywords)]:
            if calls_something(value):
                if not unused[ast.dump(value)]:
                    return False
                unused[ast.dump(value)] -= 1
    return True


def scores() -> list[ModuleScore]:
    equivalents = equivalent_mutants()
    result = []
    for path in CRITICAL:
        meta = MUTANTS / f"{path}.meta"
        module = ModuleScore(path)
        if not meta.exists():
            result.append(module)
            continue
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code in KILLED:
                module.killed += 1
            elif code in NOT_RUN:
                module.not_run.append(name)
            elif code in SURVIVED and name in equivalents:
                module.equivalent.append(name)
            elif code in SURVIVED and only_changes_a_log_line(name, path):
                module.log_only.append(name)
            elif code in SURVIVED:
                module.survived.append(name)
            elif code in NO_TESTS:
                module.no_tests.append(name)
            else:
                module.suspicious.append(name)
        result.append(module)
    return result


def report() -> int:
    """Prints the table and the survivors; the exit status says whether every module met the goal."""
    table = scores()
    width = max(len(m.path) for m in table)
    print(f"\n{'module':<{width}}  killed  equiv  log  survived  no-tests  not-run  score")
    for m in table:
        flag = "" if m.judged and m.score >= GOAL and not m.not_run else "  <-"
        print(f"{m.path:<{width}}  {m.killed:>6}  {len(m.equivalent):>5}  {len(m.log_only):>3}  {len(m.survived):>8}  "
              f"{len(m.no_tests):>8}  {len(m.not_run):>7}  {m.score:6.1%}{flag}")
    for m in table:
        missing = m.survived + m.no_tests + m.suspicious
        if missing:
            print(f"\n{m.path}: {len(missing)} not killed (see one with `mutmut show NAME`)")
            for name in missing:
                print(f"  {name}")
        if m.not_run:
            print(f"\n{m.path}: {len(m.not_run)} not run yet (run them by name, or the whole module: "
                  f"'{m.path[:-3].replace('/', '.')}.*')")
    met = all(m.judged and m.score >= GOAL and not m.not_run for m in table)
    print(f"\ngoal: {GOAL:.0%} of mutants killed or explained in each module: {'met' if met else 'NOT met'}")
    return 0 if met else 1


COPIED = ("bots", "campaigns", "core", "delivery", "settings", "emulator", "tests", "bench", "scripts")


def prune_removed(root: Path, mutants: Path) -> list[Path]:
    """mutmut copies files into mutants/ but never deletes one: a module moved or removed in the project
    would still be imported there (and found by the import checks). Deletes the copies, and mutmut's
    ``.meta`` and ``.spans`` records, of files the project no longer has; returns them."""
    removed = []
    for folder in COPIED:
        for copy in sorted((mutants / folder).rglob("*")):
            if not copy.is_file() or "__pycache__" in copy.parts:
                continue
            relative = copy.relative_to(mutants)
            original = root / (relative.with_suffix("") if copy.suffix in (".meta", ".spans") else relative)
            if not original.exists():
                copy.unlink()
                removed.append(relative)
    return removed


def prepare() -> None:
    """mutmut runs the tests inside mutants/, a copy of the project: the admin's front-end libraries
    are linked rather than copied."""
    MUTANTS.mkdir(exist_ok=True)
    link = MUTANTS / "node_modules"
    if link.is_symlink() and not link.exists():  # the checkout moved: the old link points nowhere
        link.unlink()
    if not link.exists():
        link.symlink_to(ROOT / "node_modules")
    prune_removed(ROOT, MUTANTS)
    # mutmut copies the sources' other files (templates, static files) only once: keep them current.
    for source in ("bots", "campaigns", "core", "delivery", "settings"):
        for path in (ROOT / source).rglob("*"):
            if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
                copy = MUTANTS / path.relative_to(ROOT)
                if not copy.exists() or copy.read_bytes() != path.read_bytes():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="mutmut mutant name patterns to run (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the report of the last run")
    parser.add_argument("--max-children", type=int, default=2,
                        help="mutants tested at once, each with a test database and a Redis database of its own")
    args = parser.parse_args()
    os.chdir(ROOT)  # mutmut reads mutants/ relative to where it runs
    if not args.report:
        prepare()
        env = {
            **os.environ,
            "DATABASE_URL": os.environ.get("MUTATION_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crier_mutation"),
            "REDIS_URL": os.environ.get("MUTATION_REDIS_URL", "redis://127.0.0.1:6379/10"),
            "CRIER_TEST_SLOTS": str(args.max_children),  # tests/conftest.py: test_slot
        }
        command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children), *args.names]
        finished = subprocess.run(command, cwd=ROOT, env=env)
        if finished.returncode != 0:  # a finished run exits 0, survivors or not
            print(f"mutmut failed (exit status {finished.returncode}): the scores below it would be a "
                  "previous run's, so none are printed", file=sys.stderr)
            return finished.returncode
    return report()


if __name__ == "__main__":
    sys.exit(main())
