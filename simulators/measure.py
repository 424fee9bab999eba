"""Measurements on a simulated :class:`~qsem.simulators.state.State`.

All functions are differentiable by autograd (sampling excepted) and keep the
batch axis first; unbatched states give unbatched results.

>>> import torch
>>> from qsem.circuits import Circuit, H, PauliString
>>> from qsem.simulators import simulate
>>> s = simulate(Circuit.qubits(1).add(H(wires=0)))
>>> float(expval(s, PauliString("X", wires=[0])))
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qsem.checks import check_seed, check_shots, check_wires
from qsem.circuits.errors import QsemTypeError, arg_error
from qsem.circuits.observables import Observable, as_observables

from . import kernels
from .state import State


def _check_state(state: object) -> State:
    if not isinstance(state, State):
        raise arg_error(
            "state", f"expected a State from a simulator, got {type(state).__name__}", QsemTypeError
        )
    return state


def _wires(state: State, wires: object, name: str = "wires") -> list[int]:
    if wires is None:
        return list(range(len(state.dims)))
    return list(check_wires(name, wires, n_wires=len(state.dims)))


def _abs2(t: torch.Tensor) -> torch.Tensor:
    """``|t|² = Re² + Im²`` with one real-sized allocation (no temporaries per part)."""
    return t.real.square().addcmul_(t.imag, t.imag)


def _full_probs(state: State) -> torch.Tensor:
    if state.factor is not None:
        sq = _abs2(state.factor)
        return (sq if state.weights is None else sq * state.weights[..., None]).sum(1)
    t = state.tensor
    if state.mode == "statevector":
        return _abs2(t)
    return torch.diagonal(t, dim1=-2, dim2=-1).real


def _recorded_probs(state: State, readout: Any) -> torch.Tensor:
    """Full-register probabilities ``(B, D)``, through the readout confusion if given."""
    full = _full_probs(state)
    if readout is None:
        return full
    from .readout import apply_readout, readout_errors

    return apply_readout(full, state.dims, readout_errors(readout, state.dims))


def probs(
    state: State, wires: Sequence[int] | int | None = None, *, readout: Any = None
) -> torch.Tensor:
    r"""Born probabilities, marginal on ``wires`` (in the given order): ``(B, prod dims)``.

    ``readout``: a :class:`~qsem.circuits.noise.NoiseModel` or
    :class:`~qsem.circuits.noise.ReadoutError`\ (s): the recorded probabilities
    ``p · (⊗ M)`` instead (:mod:`qsem.simulators.readout`).
    """
    state = _check_state(state)
    w = _wires(state, wires)
    return state.unbatch(kernels.marginal_probs(_recorded_probs(state, readout), state.dims, w))


def reduced_density_matrix(state: State, wires: Sequence[int] | int) -> torch.Tensor:
    """``Tr_{rest} ρ`` on ``wires`` (in the given order): ``(B, Dw, Dw)``."""
    state = _check_state(state)
    w = _wires(state, wires)
    return state.unbatch(_rdm(state, w))


def _rdm(state: State, w: list[int]) -> torch.Tensor:
    if state.factor is not None:
        b, r, d = state.factor.shape
        sub = kernels.reduced_density_matrix_sv(state.factor.reshape(b * r, d), state.dims, w)
        sub = sub.reshape(b, r, *sub.shape[-2:])
        if state.weights is not None:
            sub = sub * state.weights[..., None, None].to(sub.dtype)
        return sub.sum(1)
    if state.mode == "statevector":
        return kernels.reduced_density_matrix_sv(state.tensor, state.dims, w)
    return kernels.reduced_density_matrix_dm(state.tensor, state.dims, w)


#: Up to this register dimension the diagonal observables are read with one product
#: ``probs @ table`` (``table`` ``(D, K)``); above it, from one marginal each.
TABLE_DIM_LIMIT = 1 << 12


def expval(
    state: State, observables: Observable | Sequence[Observable], *, readout: Any = None
) -> torch.Tensor:
    """Expectation values: ``(B,)`` for one observable, ``(B, K)`` for a list of K.

    Diagonal observables (Z strings, diagonal Gell-Mann matrices) are read from the
    probabilities together, as one product with their full-register diagonals;
    the others from reduced density matrices on their wires. ``readout`` (see
    :func:`probs`) reads diagonal observables from the recorded probabilities; it
    refuses non-diagonal ones (they are not measured in the computational basis).
    """
    state = _check_state(state)
    single = isinstance(observables, Observable)
    obs = as_observables(observables, "observables")
    # read the dtype from the factor when there is one: state.tensor would build dense ρ
    src = state.factor if state.factor is not None else state.tensor
    real = torch.float32 if src.dtype == torch.complex64 else torch.float64
    diagonals: dict[int, tuple[np.ndarray, tuple[int, ...], list[int]]] = {}
    for k, o in enumerate(obs):
        w = _wires(state, o.wires, "observables")
        dims = tuple(state.dims[x] for x in w)
        o.check_dims(dims)
        diag = o.diagonal(dims)
        if diag is not None:
            diagonals[k] = (diag.numpy(), state.dims, w)
        elif readout is not None:
            raise arg_error(
                "readout",
                f"applies to computational-basis measurements; {o!r} is not diagonal "
                "(rotate into its eigenbasis in the circuit)",
            )
    out: list[torch.Tensor | None] = [None] * len(obs)
    if diagonals and state.dim > TABLE_DIM_LIMIT:
        # a large register: one marginal per observable (a (D, K) table would cost K·D)
        full = _recorded_probs(state, readout)
        for k in diagonals:
            w = list(obs[k].wires)
            local = obs[k].diagonal(tuple(state.dims[x] for x in w))
            assert local is not None
            marginal = kernels.marginal_probs(full, state.dims, w)
            out[k] = marginal @ local.to(dtype=real, device=src.device)
    elif diagonals:
        table = torch.as_tensor(
            np.stack([_full_diagonal(*v) for v in diagonals.values()], -1),
            dtype=real,
            device=src.device,
        )
        values = _recorded_probs(state, readout) @ table  # (B, number of diagonal observables)
        for j, k in enumerate(diagonals):
            out[k] = values[:, j]
    for k, o in enumerate(obs):
        if out[k] is None:
            w = list(o.wires)
            rho = _rdm(state, w)
            mat = o.matrix(tuple(state.dims[x] for x in w), dtype=rho.dtype, device=rho.device)
            out[k] = torch.einsum("ij,bji->b", mat, rho).real
    res = out[0] if single else torch.stack(out, -1)  # type: ignore[arg-type]
    return state.unbatch(res)  # type: ignore[arg-type]


def _full_diagonal(diag: np.ndarray, dims: tuple[int, ...], wires: list[int]) -> np.ndarray:
    """A diagonal on ``wires`` spread over the whole register (numpy, no torch ops)."""
    local = diag.reshape(tuple(dims[w] for w in wires))
    order = np.argsort(wires)  # put the local axes in register order
    local = local.transpose(order)
    shape = [dims[a] if a in wires else 1 for a in range(len(dims))]
    return np.broadcast_to(local.reshape(shape), dims).reshape(-1)


def sample(
    state: State,
    shots: int,
    wires: Sequence[int] | int | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    readout: Any = None,
) -> torch.Tensor:
    """Draw ``shots`` basis outcomes: ``(B, shots, len(wires))`` integer levels per wire.

    Seeded by ``seed`` (or a ``generator``) so results are reproducible; ``readout``
    (see :func:`probs`) samples the recorded outcomes.
    """
    state = _check_state(state)
    shots = check_shots("shots", shots)
    seed = check_seed("seed", seed, allow_none=True)
    w = _wires(state, wires)
    p = kernels.marginal_probs(_recorded_probs(state, readout), state.dims, w).detach()
    p = p.clamp(min=0).to(torch.float64)
    if generator is None:
        generator = torch.Generator(device=p.device)
        generator.manual_seed(0 if seed is None else int(seed))
    idx = torch.multinomial(
        p / p.sum(-1, keepdim=True), shots, replacement=True, generator=generator
    )
    dims = [state.dims[x] for x in w]
    levels = []
    rem = idx
    for d in reversed(dims):
        levels.append(rem % d)
        rem = rem // d
    return state.unbatch(torch.stack(levels[::-1], -1))


def purity(state: State, wires: Sequence[int] | int | None = None) -> torch.Tensor:
    """``Tr ρ²`` of the whole register or of the reduced state on ``wires``."""
    state = _check_state(state)
    w = _wires(state, wires)
    if len(w) == len(state.dims) and state.mode == "statevector":
        norm = (state.tensor.abs() ** 2).sum(-1)
        return state.unbatch(norm**2)
    if len(w) == len(state.dims) and state.factor is not None:
        # Tr ρ² = Σ_jk w_j w_k |<ψ_j|ψ_k>|²: an r × r Gram matrix, never the dense ρ
        gram = _factor_gram(state)
        return state.unbatch((gram.abs() ** 2).sum((-2, -1)))
    rho = state.tensor if len(w) == len(state.dims) and w == sorted(w) else _rdm(state, w)
    return state.unbatch(torch.einsum("bij,bji->b", rho, rho).real)


def _factor_gram(state: State) -> torch.Tensor:
    """``G_jk = sqrt(w_j w_k) <ψ_j|ψ_k>`` (B, r, r): same nonzero spectrum as ρ."""
    f = state.factor
    assert f is not None
    if state.weights is not None:
        f = f * torch.sqrt(state.weights.clamp(min=0))[..., None].to(f.dtype)
    return f.conj() @ f.transpose(1, 2)


def entropy(
    state: State, wires: Sequence[int] | int | None = None, *, base: float = 2.0
) -> torch.Tensor:
    """Von Neumann entropy ``-Tr ρ log ρ`` (log base ``base``, default 2: bits)."""
    state = _check_state(state)
    if isinstance(base, bool) or not isinstance(base, (int, float, np.integer, np.floating)):
        raise arg_error("base", f"must be a real number > 1, got {base!r}", QsemTypeError)
    if not 1 < base < math.inf:
        raise arg_error("base", f"must be a finite number > 1 (2: bits, e: nats), got {base!r}")
    w = _wires(state, wires)
    if len(w) == len(state.dims) and state.mode == "statevector":
        real = torch.float32 if state.tensor.dtype == torch.complex64 else torch.float64
        return state.unbatch(torch.zeros(state.batch_size, dtype=real, device=state.tensor.device))
    if len(w) == len(state.dims) and state.factor is not None:
        rho = _factor_gram(state)  # r × r, same nonzero eigenvalues as ρ
    else:
        rho = state.tensor if len(w) == len(state.dims) and w == sorted(w) else _rdm(state, w)
    evals = torch.linalg.eigvalsh(rho).clamp(min=0)
    logs = torch.where(evals > 0, torch.log(evals.clamp(min=1e-30)), torch.zeros_like(evals))
    return state.unbatch(-(evals * logs).sum(-1) / math.log(base))


def counts(samples: torch.Tensor) -> dict[tuple[int, ...], int]:
    """Histogram of one batch element's samples ``(shots, wires)`` -> {levels: count}."""
    if samples.dim() != 2:
        raise arg_error("samples", f"expected (shots, wires), got shape {tuple(samples.shape)}")
    out: dict[tuple[int, ...], int] = {}
    for row in samples.tolist():
        key = tuple(row)
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


__all__ = ["counts", "entropy", "expval", "probs", "purity", "reduced_density_matrix", "sample"]
_ = Any
