"""Ops that move the channel axis (a channel shuffle: view, transpose of dim 1, view), which Torch-Pruning's
index mapping cannot follow: version 1.6.1 divides by zero on ShuffleNet's reshapes.

The channels that pass through such an op are kept whole: the reshape whose mapping fails is marked, and
every group that reaches a marked reshape or a transpose/permute of the channel axis is left out of the
groups (its channels are never zeroed nor removed), which is exact. Groups that stay clear of them (a
branch's inner channels) are analysed as anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sweep.errors import SweepError
from sweep.structure.library import tp

VERSION_SUFFIX = re.compile(r"Backward\d*$")
_MAPPING = tp.dependency.index_mapping
_UPDATE_RESHAPE = _MAPPING.update_reshape_index_mapping
_MARK = "_sweep_moves_channels"


def _tolerant_reshape_mapping(graph: tp.DependencyGraph, node: tp.Node) -> None:
    try:
        _UPDATE_RESHAPE(graph, node)
    except ZeroDivisionError:
        setattr(node, _MARK, True)


@contextmanager
def tolerant_mapping() -> Iterator[None]:
    """Within: a reshape whose index mapping fails is marked instead of failing the whole graph."""
    before = _MAPPING.update_reshape_index_mapping
    _MAPPING.update_reshape_index_mapping = _tolerant_reshape_mapping
    try:
        yield
    finally:
        _MAPPING.update_reshape_index_mapping = before


def _signed(d: int) -> int:
    return d - 2**64 if d >= 2**63 else d


def moves_channels(grad_fn: object) -> bool:
    """A transpose or permutation that moves dim 1 (negative dims counted as possibly dim 1)."""
    if grad_fn is None or not hasattr(grad_fn, "name"):
        return False
    base = VERSION_SUFFIX.sub("", grad_fn.name())
    if base == "Transpose":
        dims = {_signed(getattr(grad_fn, "_saved_dim0", 1)), _signed(getattr(grad_fn, "_saved_dim1", 1))}
        return any(d == 1 or d < 0 for d in dims) and len(dims) == 2
    if base == "Permute":
        perm = getattr(grad_fn, "_saved_dims", None)
        return perm is None or len(perm) < 2 or _signed(perm[1]) != 1
    return False


def mixing_nodes(graph: tp.DependencyGraph) -> set[tp.Node]:
    """The graph's nodes that move the channel axis or whose index mapping failed."""
    return {
        node
        for node in graph.module2node.values()
        if getattr(node, _MARK, False) or moves_channels(getattr(node, "grad_fn", None))
    }


def library_failure(
    model: nn.Module, forward: Callable[[], object], names: dict[nn.Module, str], err: BaseException
) -> SweepError:
    """Why Torch-Pruning could not build the graph, naming the op that moves the channel axis if there is
    one (the op it is known to fail on) and the layer nearest upstream of it."""
    outputs: dict[object, str] = {}

    def note(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            outputs.setdefault(output.grad_fn, names[module])

    hooks = [m.register_forward_hook(note) for m in model.modules() if m in names and m is not model]
    try:
        out = forward()
    except Exception:
        out = None
    finally:
        for h in hooks:
            h.remove()
    found = _first_mixing_op(out.grad_fn if isinstance(out, torch.Tensor) else None, outputs)
    what = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}".rstrip(": ")
    if found is None:
        return SweepError(f"the channel analysis (Torch-Pruning) fails on this network: {what}")
    op, after = found
    where = f" after layer {after!r}" if after else ""
    return SweepError(
        f"op {op}{where} moves the channel axis (a channel shuffle), which the channel analysis cannot follow "
        f"(Torch-Pruning fails on it: {what})"
    )


def _first_mixing_op(root: object, outputs: dict[object, str]) -> tuple[str, str | None] | None:
    """The first op moving the channel axis in the autograd graph from ``root`` back to the input, and the
    named layer nearest upstream of it."""
    order, seen, stack = [], set(), [root]
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        order.append(f)
        stack.extend(g for g, _ in getattr(f, "next_functions", ()))
    for f in reversed(order):  # input side first
        if moves_channels(f):
            nearest, queue, visited = None, [g for g, _ in f.next_functions], set()
            while queue and nearest is None:
                g = queue.pop(0)
                if g is None or g in visited:
                    continue
                visited.add(g)
                nearest = outputs.get(g)
                queue.extend(h for h, _ in g.next_functions)
            return f.name(), nearest
    return None
