"""Dynamic Loss Adaptation (DLA): every generator term contributes a unit-norm gradient.

For generator parameters θ and terms L₁ … L_N, DLA writes

    ∇ = Σᵢ mᵢ · wᵢ · ∇θ Lᵢ,   wᵢ = 1 / (‖∇θ Lᵢ‖ + ε)   (wᵢ not differentiated)

into ``p.grad``: each term's gradient is rescaled to unit L2 norm over all of θ, times an
optional multiplier mᵢ (default 1), so no term dominates by its scale alone.

Three ways to produce a generator gradient, with the same signature and side effects (they
accumulate into ``p.grad`` of ``params`` only, like ``backward``; nothing else is touched, so
discriminator parameters in the graph get no gradient):

- :func:`dla_backward`, the efficient scheme. Every term depends on θ only through the
  generator output Ŷ, so ``∇θ Lᵢ = J_Gᵀ gᵢ`` with ``gᵢ = ∂Lᵢ/∂Ŷ``. Take each ``gᵢ`` by a backward
  pass that stops at Ŷ (each term's frozen backbone traversed once), then push the N small
  tensors ``gᵢ`` back through the tiny generator (N cheap passes) for the per-term parameter
  gradients; their norms give the weights and their weighted sum is the gradient: no pass over
  the total is needed.
- :func:`reference_dla_backward`, what the paper's released code does: ``Lᵢ.backward
  (retain_graph=True)`` per term to read the norms, then ``Σ mᵢ wᵢ Lᵢ`` backward once more — every
  backbone traversed twice (2N + 1 backward passes in all).
- :func:`fixed_weight_backward`, the plain step without DLA: ``Σ mᵢ Lᵢ`` backward.

A term that does not depend on Ŷ (or whose gradient is zero) gets norm 0 and weight 1/ε and
contributes nothing; no NaN arises. :func:`dla_backward` requires terms to depend on θ only
through ``output``; a term with another path to θ (a weight penalty, say) needs the reference
scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

#: Multiplier of a term missing from the ``multipliers`` mapping.
DEFAULT_MULTIPLIER = 1.0


@dataclass
class DLAResult:
    """What one DLA step measured, for logging.

    Attributes:
        weights: ``{term: wᵢ}``, the normalising weight ``1 / (‖∇θ Lᵢ‖ + ε)`` (without mᵢ).
        norms: ``{term: ‖∇θ Lᵢ‖}``, the unweighted gradient norm over all of ``params``.
    """

    weights: dict[str, float]
    norms: dict[str, float]


def dla_backward(
    params: Sequence[torch.Tensor],
    output: torch.Tensor,
    terms: Mapping[str, torch.Tensor],
    multipliers: Mapping[str, float],
    eps: float,
    reduce: Callable[[list[list[torch.Tensor]]], list[list[torch.Tensor]]] | None = None,
) -> DLAResult:
    """Efficient DLA: per-term gradients at ``output``, then N cheap passes through the generator.

    Frees the graph (the last generator pass does not retain it).

    Args:
        params: the generator's trainable parameters (gradients accumulate into their ``.grad``).
        output: the generator output Ŷ every term was computed from.
        terms: ``{name: scalar loss}``.
        multipliers: ``{name: mᵢ}``; a missing name means 1.
        eps: ε of the weights (e.g. 1e-8).
        reduce: applied to the per-term parameter gradients (one list per term, in ``terms``
            order) before the norms are taken; data-parallel training averages them over the
            processes here, so the weights are the global batch's
            (:func:`unisp.train.distributed.average_gradient_lists`).

    Returns:
        The :class:`DLAResult` (weights and norms per term).

    Example:
        >>> w = torch.tensor([1.0], requires_grad=True)
        >>> out = w * torch.tensor([3.0, 4.0])
        >>> result = dla_backward([w], out, {"a": out.sum(), "b": out.square().sum() / 2}, {}, eps=0.0)
        >>> result.norms  # ‖∇w a‖ = 3 + 4, ‖∇w b‖ = 3² + 4²
        {'a': 7.0, 'b': 25.0}
        >>> w.grad  # each term's gradient scaled to norm 1, summed
        tensor([2.])
    """
    params = list(params)
    names = list(terms)
    # 1. gᵢ = ∂Lᵢ/∂Ŷ: one backward pass per term, stopping at Ŷ (the generator's nodes are not
    # run, so its graph survives every pass). All but the last pass retain the graph, because
    # terms may share part of it (on `lite`, content and both texture maps come from one trunk forward).
    out_grads: dict[str, torch.Tensor | None] = {}
    for i, name in enumerate(names):
        loss = terms[name]
        out_grads[name] = (
            torch.autograd.grad(loss, output, retain_graph=i < len(names) - 1, allow_unused=True)[0]
            if loss.requires_grad
            else None
        )
    # 2. ∇θ Lᵢ = J_Gᵀ gᵢ: N passes through the generator only.
    active = [name for name in names if out_grads[name] is not None]
    per_term: dict[str, list[torch.Tensor]] = {}
    for i, name in enumerate(active):
        grads = torch.autograd.grad(
            output, params, grad_outputs=out_grads[name], retain_graph=i < len(active) - 1, allow_unused=True
        )
        per_term[name] = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        out_grads[name] = None  # free gᵢ as soon as it is used
    if reduce is not None:
        per_term = dict(zip(per_term, reduce(list(per_term.values()))))
    # 3. Norms, weights and the weighted sum.
    return _combine(params, names, per_term, multipliers, eps)


def reference_dla_backward(
    params: Sequence[torch.Tensor],
    output: torch.Tensor,
    terms: Mapping[str, torch.Tensor],
    multipliers: Mapping[str, float],
    eps: float,
) -> DLAResult:
    """DLA as the released code computes it: a retained backward per term, then the weighted total.

    Same arguments, result and side effects as :func:`dla_backward` (``output`` is unused: the
    backward passes run from the losses to ``params``). About twice as many backbone passes.
    """
    params = list(params)
    names = list(terms)
    saved = [p.grad for p in params]
    per_term: dict[str, list[torch.Tensor]] = {}
    for name in names:
        loss = terms[name]
        if not loss.requires_grad:
            continue
        for p in params:
            p.grad = None
        torch.autograd.backward(loss, inputs=params, retain_graph=True)
        per_term[name] = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    for p, g in zip(params, saved):
        p.grad = g
    weights, norms = _weights(names, per_term, params, eps)
    weighted = [_multiplier(multipliers, n) * weights[n].detach() * terms[n] for n in names if n in per_term]
    if weighted:
        torch.autograd.backward(sum(weighted), inputs=params)
    return _result(names, weights, norms)


def fixed_weight_backward(
    params: Sequence[torch.Tensor],
    output: torch.Tensor,
    terms: Mapping[str, torch.Tensor],
    multipliers: Mapping[str, float],
) -> None:
    """The plain step: ``Σ mᵢ Lᵢ`` backward into ``params`` (``output`` unused; same signature as DLA)."""
    weighted = [_multiplier(multipliers, n) * loss for n, loss in terms.items() if loss.requires_grad]
    if weighted:
        torch.autograd.backward(sum(weighted), inputs=list(params))


def _multiplier(multipliers: Mapping[str, float], name: str) -> float:
    return float(multipliers.get(name, DEFAULT_MULTIPLIER))


def _weights(
    names: list[str], per_term: dict[str, list[torch.Tensor]], params: list[torch.Tensor], eps: float
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-term gradient norms (0 for terms without gradient) and weights ``1 / (norm + eps)``, as tensors."""
    dtype = torch.promote_types(params[0].dtype, torch.float32) if params else torch.float32
    zero = torch.zeros((), dtype=dtype, device=params[0].device if params else None)
    norms = {
        n: torch.stack([g.to(dtype).pow(2).sum() for g in per_term[n]]).sum().sqrt() if per_term.get(n) else zero
        for n in names
    }
    weights = {n: 1.0 / (norms[n] + eps) for n in names}
    return weights, norms


def _result(names: list[str], weights: dict[str, torch.Tensor], norms: dict[str, torch.Tensor]) -> DLAResult:
    """Move the numbers to Python with one device synchronisation."""
    if not names:
        return DLAResult({}, {})
    values = torch.stack([weights[n] for n in names] + [norms[n] for n in names]).tolist()
    return DLAResult(dict(zip(names, values[: len(names)])), dict(zip(names, values[len(names) :])))


def _combine(
    params: list[torch.Tensor],
    names: list[str],
    per_term: dict[str, list[torch.Tensor]],
    multipliers: Mapping[str, float],
    eps: float,
) -> DLAResult:
    """Write ``Σ mᵢ wᵢ ∇θ Lᵢ`` into ``p.grad`` (accumulating) and return the weights and norms."""
    weights, norms = _weights(names, per_term, params, eps)
    for j, p in enumerate(params):
        total = None
        for name, grads in per_term.items():
            scaled = grads[j] * (_multiplier(multipliers, name) * weights[name]).to(grads[j].dtype)
            total = scaled if total is None else total + scaled
        if total is None:
            continue
        if p.grad is None:
            p.grad = total
        else:
            p.grad += total
    return _result(names, weights, norms)
