"""The stage that went wrong: every network bug of the zoo (tests/bug_zoo.py), written here so
that it exposes its intermediate gradients dZ2, dA1 and dZ1, must be located at its stage.

Each candidate is the zoo's derivation with the zoo's one mistake; ``_chain`` returns the
parameter gradients and the intermediates, so a bug in a step before an intermediate shows in
it, and a bug in a step after every intermediate (dW2 from Z1, a dropped bias gradient) shows
in none of them. ``EXPECTED`` says where each must be located; the guard failures (an input
mutated, a raise) are no stage's fault and get no stage. ``python tests/test_audit_stages.py``
prints the localisation table.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import manual_bp as mb
from verification import audit, audit_vjp, reference
from verification.auditing import (
    MLP_STAGES,
    AuditSpecError,
    Stage,
    StageVerdict,
    named_arrays,
)
from verification.auditing._engine import oracle_for
from verification.auditing._stages import locate_stage, resolve_stages

Array = np.ndarray[Any, Any]
STAGES = {"dZ2": "Z2", "dA1": "A1", "dZ1": "Z1"}


def _zoo() -> ModuleType:
    """tests/bug_zoo.py (the tests directory is not a package), loaded once per process."""
    if "bug_zoo" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "bug_zoo", Path(__file__).with_name("bug_zoo.py")
        )
        assert spec is not None
        assert spec.loader is not None
        sys.modules["bug_zoo"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["bug_zoo"]


zoo = _zoo()


def _softmax(z: Array, *, shift: bool = True) -> Array:
    e = np.exp(z - z.max(axis=1, keepdims=True) if shift else z)
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def _chain(
    params: mb.MLPParams,
    x: Array,
    y: Array,
    *,
    mean: bool = True,
    sign: float = 1.0,
    w2_from_z1: bool = False,
    relu_mask: bool = True,
    db2: str = "sum",
    w2_transposed: bool = False,
    squeeze: bool = False,
    shift: bool = True,
) -> tuple[mb.MLPParams, dict[str, Array]]:
    """(gradients, intermediates): the zoo's derivation, with its switches, exposing dZ2, dA1
    and dZ1 as it forms them."""
    W1, b1, W2, b2 = params
    m = x.shape[0]
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        p = _softmax(a1 @ W2 + b2, shift=shift)
    dz2 = sign * (p - y)
    if mean:
        dz2 = dz2 / m
    dW2 = (z1 if w2_from_z1 else a1).T @ dz2
    if w2_transposed:
        dW2 = dW2.T
    if db2 == "mean":
        db2_value = dz2.sum(axis=0) / m
    elif db2 == "dropped":
        db2_value = np.zeros_like(b2)
    else:
        db2_value = (np.squeeze(dz2) if squeeze else dz2).sum(axis=0)
    da1 = dz2 @ W2.T
    dz1 = da1 * (z1 > 0) if relu_mask else da1
    grads = mb.MLPParams(x.T @ dz1, dz1.sum(axis=0), dW2, db2_value)
    return grads, {"dZ2": dz2, "dA1": da1, "dZ1": dz1}


def _float32_inside(params: mb.MLPParams, x: Array, y: Array) -> tuple[Any, dict[str, Array]]:
    as32 = mb.MLPParams(*(np.asarray(p, np.float32) for p in params))
    grads, chain = _chain(as32, x.astype(np.float32), y.astype(np.float32))
    back = mb.MLPParams(*(g.astype(np.float64) for g in grads))
    return back, {k: v.astype(np.float64) for k, v in chain.items()}


def _in_place(params: mb.MLPParams, x: Array, y: Array) -> tuple[Any, dict[str, Array]]:
    W1, b1, W2, b2 = params
    z1 = x @ W1 + b1
    a1 = np.maximum(z1, 0.0)
    dz2 = y
    dz2 -= _softmax(a1 @ W2 + b2)
    dz2 *= -1.0 / x.shape[0]
    da1 = dz2 @ W2.T
    dz1 = da1 * (z1 > 0)
    grads = mb.MLPParams(x.T @ dz1, dz1.sum(axis=0), a1.T @ dz2, dz2.sum(axis=0))
    return grads, {"dZ2": dz2, "dA1": da1, "dZ1": dz1}


class _Memoised:
    """Returns its first result (gradients and intermediates) for every later input."""

    def __init__(self) -> None:
        self.first: tuple[Any, dict[str, Array]] | None = None

    def __call__(self, params: mb.MLPParams, x: Array, y: Array) -> tuple[Any, dict[str, Array]]:
        if self.first is None:
            self.first = _chain(params, x, y)
        return self.first


CANDIDATES: dict[str, Any] = {
    "missing 1/m": {"mean": False},
    "sign flip": {"sign": -1.0},
    "dW2 from Z1": {"w2_from_z1": True},
    "ReLU mask dropped": {"relu_mask": False},
    "bias gradient dropped": {"db2": "dropped"},
    "bias averaged twice": {"db2": "mean"},
    "dW2 transposed": {"w2_transposed": True},
    "squeeze at m = 1": {"squeeze": True},
    "softmax without max shift": {"shift": False},
    "float32 inside": _float32_inside,
    "in-place update of an input": _in_place,
    "memoised first result": _Memoised,
}
"""Every network bug of the zoo: the switches of ``_chain``, or a function (a class for the
memoised one, one fresh memo per audit) returning (gradients, intermediates)."""

EXPECTED: dict[str, str | None] = {
    "missing 1/m": "dZ2",
    "sign flip": "dZ2",
    "dW2 from Z1": "after: W2",
    "ReLU mask dropped": "dZ1",
    "bias gradient dropped": "after: b2",
    "bias averaged twice": "after: b2",
    "dW2 transposed": "after: W2",
    "squeeze at m = 1": "after: b2",
    "softmax without max shift": "dZ2",
    "float32 inside": "dZ2|dA1",
    "in-place update of an input": None,
    "memoised first result": None,
}
"""Where each is located: the first intermediate that differs, "after: leaf" when every
intermediate agrees and that leaf's gradient fails, None for no stage: a guard failure, or a
stale memoised result, which is no stage's fault (the diagnosis names the memo instead). Float32
inside rounds everywhere: it is located where its rounding first shows on the shrunk input, at
dZ2, or at dA1 when dZ2 happens to be exact in float32 (logits all equal, P = 1/k)."""


def _split(name: str) -> tuple[Any, Any]:
    """(grad_fn, intermediates) for the zoo bug ``name`` (one shared call per input)."""
    spec = CANDIDATES[name]
    fn = spec() if isinstance(spec, type) else spec
    if isinstance(fn, dict):
        switches = fn

        def fn(params: mb.MLPParams, x: Array, y: Array) -> tuple[Any, dict[str, Array]]:
            return _chain(params, x, y, **switches)

    def grad_fn(params: mb.MLPParams, x: Array, y: Array) -> Any:
        return fn(params, x, y)[0]

    def intermediates(params: mb.MLPParams, x: Array, y: Array) -> dict[str, Array]:
        return fn(params, x, y)[1]

    return grad_fn, intermediates


def located(report: Any) -> str | None:
    """The report's stage as "dZ1", "after: W2", or None."""
    if report.stage is None:
        return None
    agree, _, rest = report.stage.partition(" differs")
    if ";" in agree:
        agree = agree.rpartition("; ")[2]
    if "so the error is in a step after them" in rest:
        return f"after: {agree}"
    return agree


def _audit(name: str, seed: int = 0) -> Any:
    grad_fn, intermediates = _split(name)
    bug = zoo.BUGS[name]
    return audit(
        grad_fn,
        reference.mlp_loss,
        zoo.mlp_problems(),
        max_examples=bug.max_examples,
        seed=seed,
        stages=STAGES,
        intermediates=intermediates,
    )


def test_every_network_bug_of_the_zoo_has_a_stage_exposing_version() -> None:
    network = {name for name, bug in zoo.BUGS.items() if bug.loss is reference.mlp_loss}
    assert set(CANDIDATES) == network == set(EXPECTED)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_zoo_network_bug_is_located_at_its_stage(name: str) -> None:
    report = _audit(name)
    assert not report.passed, str(report)
    assert report.kind in zoo.BUGS[name].kind.split("|"), str(report)
    expected = EXPECTED[name]
    if report.kind == "raised":  # squeeze at m = 1 may raise instead of returning (k,) wrong
        expected = None
    assert located(report) in (expected or "").split("|") or located(report) is expected, str(
        report
    )


def test_the_report_names_the_relu_mask_after_the_stages_that_agree() -> None:
    report = _audit("ReLU mask dropped")
    assert report.stage is not None
    assert report.stage.startswith("dZ2 and dA1 agree; dZ1 differs: the ReLU mask"), report.stage
    assert "stage: dZ2 and dA1 agree" in str(report)
    assert report.to_dict()["stage"] == report.stage


def test_a_correct_candidate_with_intermediates_passes_and_gets_no_stage() -> None:
    def manual_chain(params: mb.MLPParams, x: Array, y: Array) -> Any:
        _, cache = mb.mlp_forward(params, x)
        return mb.mlp_backward_intermediates(params, cache, y)

    def manual_grads(params: mb.MLPParams, x: Array, y: Array) -> Any:
        return mb.mlp_loss_and_grads(params, x, y)[1]

    report = audit(
        manual_grads,
        reference.mlp_loss,
        zoo.moderate_mlp_problems(),
        max_examples=30,
        seed=0,
        stages=STAGES,
        intermediates=manual_chain,
    )
    assert report.passed, str(report)
    assert report.stage is None


def test_manual_bp_intermediates_agree_at_every_stage() -> None:
    rng = np.random.default_rng(0)
    params = mb.MLPParams(
        rng.standard_normal((3, 4)),
        rng.standard_normal(4),
        rng.standard_normal((4, 2)),
        rng.standard_normal(2),
    )
    x, y = rng.standard_normal((5, 3)), np.eye(2)[[0, 1, 1, 0, 1]]

    def manual_chain(params: mb.MLPParams, x: Array, y: Array) -> Any:
        return mb.mlp_backward_intermediates(params, mb.mlp_forward(params, x)[1], y)

    verdict = locate_stage(
        manual_chain,
        resolve_stages(STAGES),
        (params, x, y),
        oracle_for=oracle_for,
        failing_location="W2[0, 1]",
    )
    assert verdict == StageVerdict(("dZ2", "dA1", "dZ1"), None, "dW2 = A1^T dZ2", None, "W2")


def test_a_stage_given_as_a_jax_function_pair() -> None:
    # the same ReLU stage, spelled out by the user instead of taken from MLP_STAGES
    z1 = Stage(
        lambda p, x, y: x @ p.W1 + p.b1,
        lambda z, p, x, y: reference.softmax_cross_entropy(reference.relu(z) @ p.W2 + p.b2, y),
        "my ReLU step",
    )
    grad_fn, intermediates = _split("ReLU mask dropped")
    report = audit(
        grad_fn,
        reference.mlp_loss,
        zoo.mlp_problems(),
        seed=0,
        stages={"dZ2": "Z2", "dZ1": z1},
        intermediates=intermediates,
    )
    assert report.stage is not None
    assert report.stage.startswith("dZ2 agrees; dZ1 differs: my ReLU step"), report.stage


def test_intermediates_that_raise_or_are_missing_are_reported_as_such() -> None:
    params = mb.MLPParams(np.eye(2), np.zeros(2), np.eye(2), np.zeros(2))
    problem = (params, np.ones((1, 2)), np.array([[1.0, 0.0]]))
    chain = resolve_stages(STAGES)

    def raises(*a: Any) -> Any:
        raise RuntimeError("no chain here")

    verdict = locate_stage(raises, chain, problem, oracle_for=oracle_for)
    assert verdict.differs == "dZ2"
    assert "raised RuntimeError: no chain here" in str(verdict)
    missing = locate_stage(
        lambda *a: {"dZ2": _chain(*a)[1]["dZ2"]}, chain, problem, oracle_for=oracle_for
    )
    assert str(missing).startswith("dZ2 agrees; dA1 differs"), str(missing)
    assert "not returned" in str(missing)
    not_a_mapping = locate_stage(lambda *a: [1, 2], chain, problem, oracle_for=oracle_for)
    assert "must return a mapping or a NamedTuple" in str(not_a_mapping)
    integers = locate_stage(
        lambda *a: {"dZ2": np.zeros((1, 2), int)}, chain, problem, oracle_for=oracle_for
    )
    assert "not a float array" in str(integers)
    transposed = locate_stage(
        lambda *a: {"dZ2": _chain(*a)[1]["dZ2"].T}, chain, problem, oracle_for=oracle_for
    )
    assert transposed.differs == "dZ2"
    assert "shape (2, 1) where (1, 2) is expected" in str(transposed)


def test_stage_declarations_are_checked() -> None:
    with pytest.raises(AuditSpecError, match="is not a stage of the map"):
        resolve_stages({"dZ1": "Z3"})
    with pytest.raises(AuditSpecError, match="must be a Stage or a stage name"):
        resolve_stages({"dZ1": 3})  # type: ignore[dict-item]
    with pytest.raises(AuditSpecError, match="at least one"):
        resolve_stages({})
    with pytest.raises(AuditSpecError, match="stages and intermediates go together"):
        audit(zoo.mlp_grads, reference.mlp_loss, zoo.mlp_problems(), stages=STAGES)
    assert set(MLP_STAGES) == {"Z2", "A1", "Z1"}


def stage_table(seeds: int = 1) -> str:
    """Markdown: each network bug of the zoo, the stage reported (seed 0..), right or wrong."""
    lines = ["| bug | kind | stage reported | expected | right |", "|---|---|---|---|---|"]
    for name in CANDIDATES:
        for seed in range(seeds):
            report = _audit(name, seed)
            expected = None if report.kind == "raised" else EXPECTED[name]
            got = located(report)
            right = got in (expected or "").split("|") or got is expected
            lines.append(
                f"| {name} | {report.kind} | {report.stage or '(none: ' + str(report.kind) + ')'}"
                f" | {expected or '(none)'} | {'right' if right else 'WRONG'} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(stage_table(int(sys.argv[1]) if len(sys.argv) > 1 else 1))


def test_a_layer_audit_locates_its_stage_too() -> None:
    # a ReLU layer relu(x W), audited as a vjp; its intermediate dZ = dout * 1[x W > 0] is
    # right, and dx = dZ W (instead of dZ W^T) is wrong after it: with W square, no shape error
    def forward_ref(x: Any, w: Any) -> Any:
        return reference.relu(x @ w)

    def chain(x: Array, w: Array, dout: Array) -> dict[str, Array]:
        return {"dZ": dout * (x @ w > 0)}

    def backward(dout: Array, x: Array, w: Array) -> Array:
        return chain(x, w, dout)["dZ"] @ w

    z = Stage(
        lambda x, w, dout: x @ w,
        lambda z, x, w, dout: (reference.relu(z) * dout).sum(),
        "the ReLU mask",
        {"x": "dx = dZ W^T"},
    )
    shapes = named_arrays({"x": ("m", "n"), "w": ("n", "n")}, bounds=(3.0,))
    report = audit_vjp(
        backward,
        forward_ref,
        shapes,
        seed=0,
        arg_names=["x", "w"],
        stages={"dZ": z},
        intermediates=chain,
    )
    assert not report.passed, str(report)
    assert report.stage == "dZ agrees; x differs, so the error is in a step after them: dx = dZ W^T"


def test_a_stage_whose_gradient_cancels_to_zero_allows_the_rounding_of_the_terms_it_sums(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch norm at batch size 1: dJ/dV is exactly 0 as the difference of terms near 822;
    # a correct candidate that forms them in another order leaves one ulp of 822 (1.1e-13).
    import jax.numpy as jnp

    from verification.auditing import Stage, _stages

    x = np.array([[0.3, -1.2]])
    sigma = np.sqrt(x.var(0) + 1e-5)

    def rest(v: Any, x: Any) -> Any:
        return jnp.sum(2.6 * (v - v.mean(0)) / jnp.sqrt(v.var(0) + 1e-5))

    def intermediates(x: Array) -> dict[str, Array]:
        g = np.full_like(x, 2.6)
        return {"dV": g / sigma - g.mean(0) * (1 / sigma)}

    assert np.all(intermediates(x)["dV"] != 0)  # the rounding residue is there
    stages = {"dV": Stage(lambda x: x, rest, "batch norm")}
    verdict = locate_stage(intermediates, stages, (x,), oracle_for=oracle_for)
    assert verdict.differs is None, str(verdict)

    rule = _stages.leaf_tolerances

    def without_summed(*args: Any, **kwargs: Any) -> Any:
        return rule(*args, **{**kwargs, "summed": 0.0})

    monkeypatch.setattr(_stages, "leaf_tolerances", without_summed)
    assert locate_stage(intermediates, stages, (x,), oracle_for=oracle_for).differs == "dV"


def test_a_stage_off_by_what_its_inputs_conditioning_allows_agrees() -> None:
    # d/dV sum(cos V) = -sin V at V ~ 1.7e10: reducing V mod a rounded 2 pi first is exact
    # for an input perturbed by < eps, yet moves -sin V by ~7e-7, far beyond the strict float64
    # tolerance. The second look allows it, as the engine's check does, by how much the
    # reference moves when the input moves by eta (grad_perturbed): a correct stage.
    import jax.numpy as jnp

    x = (np.float32(1.7e10) + np.arange(16, dtype=np.float32) * np.float32(1024)).astype(
        np.float64
    )  # exact in float32 too: the float32 reference sees the same input
    stage = {"dV": Stage(lambda x: x, lambda v, x: jnp.sum(jnp.cos(v)), "-sin")}

    def reduced(x: Array) -> dict[str, Array]:
        return {"dV": -np.sin(np.mod(x, 2 * np.pi))}

    assert np.max(np.abs(reduced(x)["dV"] + np.sin(x))) > 1e-7
    verdict = locate_stage(reduced, stage, (x,), oracle_for=oracle_for, seed=0)
    assert verdict.differs is None, str(verdict)
    wrong = locate_stage(lambda x: {"dV": np.sin(x)}, stage, (x,), oracle_for=oracle_for, seed=0)
    assert wrong.differs == "dV", str(wrong)


def test_a_stage_whose_reference_is_0_is_judged_on_the_scale_of_the_chain() -> None:
    # dQ's reference is exactly 0; dQ is formed from dP (1e6 here), so a correct dQ errs by a
    # few eps of 1e6, not of 0: the chain's scale, not the stage's own, bounds its rounding.
    import jax.numpy as jnp

    x = np.linspace(-1.0, 1.0, 4)
    stages = {
        "dP": Stage(lambda x: x, lambda v, x: jnp.sum(1e6 * v), "dP = 1e6"),
        "dQ": Stage(lambda x: x, lambda v, x: jnp.sum(0.0 * v), "dQ = 0 dP"),
    }
    eps = float(np.finfo(np.float64).eps)

    def chain(residue: float) -> Callable[[Array], dict[str, Array]]:
        return lambda x: {"dP": np.full(4, 1e6), "dQ": np.full(4, residue * 1e6)}

    rounded = locate_stage(chain(4 * eps), stages, (x,), oracle_for=oracle_for, seed=0)
    assert rounded.differs is None, str(rounded)
    wrong = locate_stage(chain(1e-6), stages, (x,), oracle_for=oracle_for, seed=0)
    assert wrong.differs == "dQ", str(wrong)
