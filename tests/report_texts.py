"""The audit's reports, recorded word for word: every zoo case's full text and JSON summary.

The zoos' own tests check what a report must say (a cause named, a line located, a verdict);
these recordings pin everything else it says (each number, each sentence, the reproducer, the
fields of the JSON), so that a change to a rule or to a word shows up as a diff that someone
reviews, not as a silent change of what users read. ``tests/test_report_texts.py`` compares.

Each recording holds the environment it was made in. Under the same versions and processor
every character counts; under others a measured decimal is free (its last digits follow the
libraries' order of operations, as in README.md's quoted outputs), and a searched case may
take another path (its shrinking follows every verdict on the way, and a verdict near a bound
the last bits of the kernels), so the searched cases are compared only under the recorded
versions and processor. After an intended change, regenerate and review the diff:

    python tests/report_texts.py            # rewrites tests/report_texts/*.txt
    python tests/report_texts.py --check    # exit 1 and a diff where a text changed
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent
TEXTS = HERE / "report_texts"
HEADER = "# made with: "
"""The recording's first line: the environment (``tools/readme_outputs.environment()``)."""
SECTION = re.compile(r"^=== (.+) ===$")


def sibling(name: str, folder: Path = HERE) -> ModuleType:
    """A module of ``folder`` by file (the tests import in importlib mode: no ``sys.path``)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def outputs() -> ModuleType:
    """``tools/readme_outputs.py``: the environment line and the decimal-free comparison."""
    return sibling("readme_outputs", ROOT / "tools")


@dataclass(frozen=True)
class Scenario:
    """One recorded report: ``run()`` returns it; ``searched``: drawn by hypothesis."""

    run: Callable[[], Any]
    searched: bool = True


def needs(name: str) -> str | None:
    """The optional module a zoo case's name says it runs on (torch), without which the zoo
    leaves the case out and its recording is not compared."""
    return "torch" if "torch" in name.lower() else None


def _diagnosis() -> dict[str, Scenario]:
    zoo = sibling("diagnosis_zoo")
    return {name: Scenario(partial(zoo.report, case)) for name, case in zoo.CASES.items()}


def _network() -> dict[str, Scenario]:
    from verification.auditing import audit

    zoo = sibling("bug_zoo")
    cases = {name: Scenario(partial(zoo.report, name)) for name in zoo.BUGS}
    for name, (candidate, loss, problems) in zoo.CORRECT.items():
        cases[f"correct: {name}"] = Scenario(
            partial(audit, candidate, loss, problems(), max_examples=30, seed=0)
        )
    return cases


def _locate() -> dict[str, Scenario]:
    zoo = sibling("locate_zoo")
    return {name: Scenario(partial(zoo.run, case)) for name, case in zoo.CASES.items()}


def _stages() -> dict[str, Scenario]:
    # the network bugs written to expose their intermediate gradients live with their tests
    stages = sibling("test_audit_stages")
    return {name: Scenario(partial(stages._audit, name)) for name in stages.CANDIDATES}


def _kinks() -> dict[str, Scenario]:
    import numpy as np

    import manual_bp as mb
    from verification import reference, strategies
    from verification.auditing import MAX_TIES, MLP_RELU, RELU, audit, audit_vjp, named_arrays

    k = sibling("test_audit_kinks")  # the candidates at kinks live with their tests
    z = named_arrays({"z": ("m", "h")}, bounds=(3.0,))
    x = named_arrays({"x": ("m", "k")}, bounds=(3.0,))
    at_zero = (
        mb.MLPParams(np.zeros((1, 1)), np.zeros(1), np.array([[1.0, -1.0]]), np.zeros(2)),
        np.array([[1.5]]),
        np.array([[1.0, 0.0]]),
    )
    relu = partial(
        audit_vjp, forward_ref=reference.relu, args=z, seed=0, max_examples=60, arg_names=["z"]
    )
    ties = partial(
        audit_vjp, forward_ref=k._max_first, args=x, seed=0, max_examples=60, arg_names=["x"]
    )
    net = partial(audit, loss_fn=reference.mlp_loss, seed=0, max_examples=60)
    calls = {
        "relu'(0) = 1, RELU declared": partial(relu, k.relu_backward_one_at_zero, kinks=RELU),
        "relu'(0) = 1, nothing declared": partial(relu, k.relu_backward_one_at_zero, kinks=None),
        "relu correct, RELU declared": partial(relu, k.relu_backward, kinks=RELU),
        "network relu'(0) = 1, MLP_RELU declared": partial(
            net, k.mlp_grads_one_at_zero, args=strategies.mlp_problems(), kinks=MLP_RELU
        ),
        "network relu'(0) = 1 at the kink, nothing declared": partial(
            audit, k.mlp_grads_one_at_zero, reference.mlp_loss, at_zero
        ),
        "network relu'(0) = 1 at the kink, MLP_RELU declared": partial(
            audit, k.mlp_grads_one_at_zero, reference.mlp_loss, at_zero, kinks=MLP_RELU
        ),
        "max tie to the first index, MAX_TIES declared": partial(
            ties, k.max_backward_first, kinks=MAX_TIES
        ),
        "max tie to the last index, MAX_TIES declared": partial(
            ties, k.max_backward_last, kinks=MAX_TIES
        ),
    }
    return {name: Scenario(call) for name, call in calls.items()}


def _production() -> dict[str, Scenario]:
    from verification import reference
    from verification.auditing import audit

    p = sibling("test_audit_production")  # its network and candidates at the sizes people train
    zoo = sibling("bug_zoo")
    mnist = p._network(*p.MNIST)
    run = partial(audit, loss_fn=reference.mlp_loss, args=mnist, seed=0)
    calls = {
        "mnist size: correct": partial(run, p._correct),
        "mnist size: one wrong element of dW1": partial(run, p._one_wrong_element),
        "mnist size: one wrong element of dW1, --quick": partial(
            run, p._one_wrong_element, quick=True
        ),
        "mnist size: missing 1/m": partial(run, zoo.mlp_missing_one_over_m),
        "mnist size: ReLU mask dropped": partial(run, zoo.mlp_relu_mask_dropped),
    }
    return {name: Scenario(call, searched=False) for name, call in calls.items()}


def _second_order() -> dict[str, Scenario]:
    if importlib.util.find_spec("torch") is None:
        return {}  # the torch Functions' double backward: recorded where torch is
    from verification.auditing import audit_vjp

    v = sibling("test_audit_vjp2")  # its torch Functions
    run = partial(audit_vjp, forward_ref=v.silu, args=v.SHAPES, seed=0, max_examples=20)
    calls = {
        "torch: SiLU saving its sigmoid, first order": partial(run, v.SiLUSavedSigmoid),
        "torch: SiLU saving its sigmoid, second order": partial(run, v.SiLUSavedSigmoid, order=2),
        "torch: SiLU recomputing its sigmoid, second order": partial(
            run, v.SiLURecomputed, order=2
        ),
    }
    return {name: Scenario(call) for name, call in calls.items()}


def _hvp() -> dict[str, Scenario]:
    from verification import reference
    from verification.auditing import audit_hvp

    zoo = sibling("hvp_zoo")
    loss = reference.mlp_loss
    cases = {
        bug.name: Scenario(
            partial(audit_hvp, bug.hvp, loss, zoo.mlp_problems(), seed=0, max_examples=100)
        )
        for bug in zoo.BUGS
    }
    for name, product, dtype in zoo.CORRECT:
        cases[f"correct: {name}"] = Scenario(
            partial(audit_hvp, product, loss, zoo.mlp_problems(dtype), seed=0, max_examples=20)
        )
    return cases


def _lowprec() -> dict[str, Scenario]:
    import ml_dtypes
    import numpy as np

    from verification import reference
    from verification.auditing import audit
    from verification.auditing._lowprec import default_bounds

    kernels = sibling("lowprec_kernels")
    problems = sibling("bug_zoo").mlp_problems
    cases = {}
    for label, dtype in (
        ("float16", np.dtype(np.float16)),
        ("bfloat16", np.dtype(ml_dtypes.bfloat16)),
    ):
        drawn = problems(dtype, bounds=default_bounds(dtype) or (3.0, 1000.0))
        for name in sorted(vars(kernels)):
            kernel = getattr(kernels, name)
            if name.startswith("mlp_") and len(inspect.signature(kernel).parameters) == 3:
                cases[f"{label}: {name}"] = Scenario(
                    partial(audit, kernel, reference.mlp_loss, drawn, max_examples=40, seed=0)
                )
    return cases


def mistake(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """What a user's mistake gets: the error's type and message (``no error`` if none)."""
    try:
        call(*args, **kwargs)
    except Exception as error:  # the message is what is recorded
        return f"{type(error).__name__}: {error}"
    return "no error"


def _tanh_sum(x: Any) -> Any:
    import jax.numpy as jnp

    return jnp.sum(jnp.tanh(x))


def _identity(*args: Any) -> Any:
    return args[0]


SPEC_MISTAKES = (
    "x=m:[1,0]",
    "x=m:ints[0.5,2]",
    "x=m:ints[1,2",
    "x=m:|x|>=0",
    "x=m:real:positive",
    "x=m:binary:distinct",
    "x=m,n:onehot:positive",
    "x=m:gauss",
    "x=m:postive",
    "x:=abc",
    "x",
    "=m",
    "p.W=n p.W=n",
    "y=:onehot",
    "z=m,k y=m:classes(q)",
    "x=m:classes(k)",
    "x=m,(n",
    "x=m,n+",
    "x=m,n**2",
    "x=m;n",
)
"""``--shapes`` texts with one mistake each."""


def _errors() -> dict[str, Scenario]:
    import jax.numpy as jnp
    import numpy as np

    from verification.auditing import (
        audit,
        audit_vjp,
        kinks_at,
        named_arrays,
        parse_shapes,
        pool_ties,
    )
    from verification.auditing._targets import resolve

    x = (np.ones((2, 3)),)
    cases = {
        f"--shapes {t!r}": Scenario(partial(mistake, parse_shapes, t), False) for t in SPEC_MISTAKES
    }
    calls: dict[str, Callable[[], str]] = {
        "named_arrays: a class count naming no dimension": partial(
            mistake, named_arrays, {"z": "m,k", "y": "m:classes(q)"}
        ),
        "named_arrays: dims naming no dimension": partial(
            mistake, named_arrays, {"x": "batch,n"}, dims={"bath": [2]}
        ),
        "resolve: MODULE.FUNCTION": partial(mistake, resolve, "sce.grad"),
        "resolve: PACKAGE.MODULE.FUNCTION": partial(mistake, resolve, "pkg.sce.grad"),
        "resolve: a function the module lacks": partial(mistake, resolve, "json:no_such_function"),
        "audit: a vector-valued loss": partial(mistake, audit, _identity, jnp.tanh, x),
        "audit: argnums out of range": partial(mistake, audit, _identity, _tanh_sum, x, argnums=2),
        "audit: arg_names of another length": partial(
            mistake, audit, _identity, _tanh_sum, x, arg_names=["x", "y"]
        ),
        "audit_vjp: argnums out of range": partial(
            mistake, audit_vjp, _identity, jnp.tanh, x, argnums=1
        ),
        "kinks_at: no points": partial(mistake, kinks_at, []),
        "pool_ties: a bad window": partial(mistake, pool_ties, (0, 2)),
    }
    cases.update({name: Scenario(call, False) for name, call in calls.items()})
    return cases


GROUPS: dict[str, Callable[[], dict[str, Scenario]]] = {
    "diagnosis": _diagnosis,
    "network": _network,
    "locate": _locate,
    "stages": _stages,
    "kinks": _kinks,
    "production": _production,
    "second_order": _second_order,
    "hvp": _hvp,
    "lowprec": _lowprec,
    "errors": _errors,
}
"""Recording -> its scenarios (each a zoo, loaded when asked for)."""


def normalise(text: str) -> str:
    """What does not belong to the audit's words: the repository's and the temporary folders'
    paths, and the versions the oracle line names."""
    import jax

    text = text.replace(str(ROOT) + "/", "").replace(str(ROOT), "<repository>")
    text = re.sub(r"/\S*/manual-bp-audit|/\S*/audit-saves\d*", "<saves>", text)
    # the audit's own frames in a traceback: their lines move with any edit (and mutmut's)
    text = re.sub(r'(File "verification/[^"]+", line )\d+', r"\1<n>", text)
    return text.replace(f"jax {jax.__version__}", "jax <version>")


def render(report: Any) -> str:
    """The report's text, then its JSON summary without what follows the process rather than
    the audit: the timings, the programs compiled so far, the library versions (a text, such
    as a mistake's message, as it is)."""
    if isinstance(report, str):
        return normalise(report)
    document = report.to_dict()
    for varying in ("timings", "profile", "compilations", "environment"):
        document.pop(varying, None)
    return normalise(
        str(report) + "\n--- json ---\n" + json.dumps(document, indent=1, sort_keys=True)
    )


def read(group: str) -> tuple[str, dict[str, str]]:
    """(the recorded environment, name -> recorded text) of one group's file."""
    lines = (TEXTS / f"{group}.txt").read_text("utf-8").split("\n")
    assert lines[0].startswith(HEADER), f"{group}.txt: no '{HEADER}' line first"
    texts: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines[1:]:
        match = SECTION.match(line)
        if match:
            current = texts.setdefault(match.group(1), [])
        else:
            current.append(line)
    return lines[0][len(HEADER) :], {k: "\n".join(v).rstrip("\n") for k, v in texts.items()}


def write(group: str, texts: dict[str, str]) -> None:
    """Record one group's texts with this environment."""
    TEXTS.mkdir(exist_ok=True)
    body = [HEADER + outputs().environment()]
    for name, text in texts.items():
        body += [f"=== {name} ===", text, ""]
    (TEXTS / f"{group}.txt").write_text("\n".join(body), "utf-8")


def same(
    recorded: str,
    here: str,
    names: tuple[str, ...] = ("Python", "numpy", "jax", "jaxlib", "hypothesis", "cpu"),
) -> bool:
    """Whether two environment lines name the same versions of ``names`` (by default all the
    texts depend on: the libraries that compute and draw, and the processor)."""

    def picked(line: str) -> list[str | None]:
        found = (re.search(rf"(?:^|, ){re.escape(n)} ([^,]+)", line) for n in names)
        return [m.group(1) if m else None for m in found]

    return picked(recorded) == picked(here)


def matches(expected: str, actual: str, exact: bool) -> bool:
    """Whether a fresh text matches its recording: every character when ``exact``, else with
    each measured decimal free."""
    if exact:
        return expected == actual
    block = outputs().Block("output", 0, ["$ run", *expected.split("\n")])
    return bool(outputs().compare(block, [actual.split("\n")], same_versions=False)[0])


def diff(expected: str, actual: str, name: str) -> str:
    """A unified diff from the recording to the fresh text."""
    lines = difflib.unified_diff(
        expected.split("\n"), actual.split("\n"), f"recorded {name}", f"fresh {name}", lineterm=""
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/report_texts.py", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare, rewrite nothing")
    parser.add_argument("groups", nargs="*", default=list(GROUPS), help="default: all")
    args = parser.parse_args(argv)
    import verification  # noqa: F401  (JAX in float64, as the tests run it)

    changed = 0
    for group in args.groups:
        fresh = {name: render(s.run()) for name, s in GROUPS[group]().items()}
        recorded = read(group)[1] if (TEXTS / f"{group}.txt").exists() else {}
        moved = [n for n in fresh if recorded.get(n) != fresh[n]]
        moved += [n for n in recorded if n not in fresh]
        changed += len(moved)
        for name in moved:
            print(diff(recorded.get(name, ""), fresh.get(name, ""), name))
        if not args.check:
            write(group, fresh)
        print(f"{group}: {len(fresh)} texts, {len(moved)} changed", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
