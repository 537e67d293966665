"""Coupled channel groups of any network, from Torch-Pruning's dependency graph.

Torch-Pruning traces the network through autograd and ties together every layer that shares a channel: a
residual add ties all the convs that write into its stream, a depthwise conv ties its filter to its input
channel, a concatenation maps index ranges. From each of its groups we keep the producer side, the
parameter rows that write the channel (conv/linear out-channel rows and biases, BatchNorm gamma and beta,
depthwise filters): when all of them are zero the channel is exactly zero wherever it is read, so removing
it changes nothing.

Modern patterns: a squeeze-excitation gate (``x * sigmoid(...)``) keeps a zero channel of ``x`` zero, its
``fc2`` rows go with ``x``'s channels and its squeeze channels form groups of their own; the channels a
grouped conv reads or writes carry a block id per channel (``blocks``: as many must go from each of its
groups); a concatenation read by a depthwise conv is one group rooted at that conv; channels that pass a
channel shuffle (``sweep.structure.shuffle``) are kept whole.

A graph we cannot vouch for is refused rather than analysed wrongly: parameters in a module type the
pruning functions do not know, a norm over channels (LayerNorm, GroupNorm: removal would not be exact),
BatchNorm without gamma/beta, a module called twice, an op that does not map a zero channel to zero or that
mixes channels (a custom autograd function, a transpose of the spatial axes, a sigmoid that feeds anything
but a gate's product, adding a constant).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from sweep.errors import SweepError, quote
from sweep.structure.deadline import deadline
from sweep.structure.library import tp
from sweep.structure.shuffle import VERSION_SUFFIX, library_failure, mixing_nodes, tolerant_mapping

PRODUCER_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)
ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
SUPPORTED_LAYERS = "Conv2d (plain or depthwise), Linear, BatchNorm1d/2d"

# Autograd ops that act on each channel alone and map an all-zero channel to zero. Views, cat, split,
# slice and expand are followed by Torch-Pruning's index mapping; Add/Sub/Div get extra checks below.
ZERO_SAFE_OPS = frozenset(
    {
        "Add", "Sub", "Mul", "Div", "Neg", "Clone", "T",
        "Relu", "Hardtanh", "LeakyRelu", "Elu", "Gelu", "Silu", "Tanh", "Hardswish", "Mish",
        "MaxPool2DWithIndices", "AvgPool2D", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Mean",
        "UpsampleNearest2D", "UpsampleBilinear2D",
        "NativeDropout",
    }
)  # fmt: skip
# Ops that do not keep a zero channel zero but are accepted as the gate of a product (``_gate``).
GATE_OPS = frozenset({"Sigmoid", "Hardsigmoid"})
FOLLOWED_TYPES = frozenset(
    {
        tp.ops.OPTYPE.CONCAT, tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.RESHAPE, tp.ops.OPTYPE.SLICE,
        tp.ops.OPTYPE.EXPAND, tp.ops.OPTYPE.OUTPUT,
    }
)  # fmt: skip


@dataclass(frozen=True)
class ParamSlice:
    """Rows ``rows`` (along dim 0) of parameter ``param`` of module ``module`` carry the group's channels
    ``channels`` (the same length: ``rows[k]`` carries channel ``channels[k]``)."""

    module: str
    param: str
    channels: tuple[int, ...]
    rows: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.module}.{self.param}"


@dataclass(frozen=True)
class ChannelGroup:
    """One coupled set of channels, named after its root layer (the first conv/linear writing it).

    ``slices`` are the producer-side parameter rows; ``concat_rows`` the positions the channels take in
    each concatenation they pass through; ``layers`` every conv/linear that writes the channels."""

    name: str
    width: int
    slices: tuple[ParamSlice, ...]
    layers: tuple[str, ...]
    concat_rows: tuple[tuple[int, ...], ...] = ()
    # a block id per channel where a grouped conv reads or writes the channels: removal must take the same
    # number of channels from every block, so that the conv's groups stay equal; () when unconstrained
    blocks: tuple[int, ...] = ()

    def tensors(self, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(parameter, rows, channels) per slice, the index tensors on the parameter's device."""
        out = []
        for s in self.slices:
            p = model.get_parameter(s.name)
            out.append(
                (
                    p,
                    torch.tensor(s.rows, dtype=torch.long, device=p.device),
                    torch.tensor(s.channels, dtype=torch.long, device=p.device),
                )
            )
        return out

    @torch.no_grad()
    def alive(self, model: nn.Module) -> torch.Tensor:
        """Bool per channel: any of its producer rows is non-zero."""
        alive = torch.zeros(self.width, dtype=torch.bool)
        for p, rows, channels in self.tensors(model):
            nonzero = p.detach()[rows].reshape(len(rows), -1).ne(0).any(dim=1).cpu()
            alive[channels.cpu()] |= nonzero
        return alive

    @torch.no_grad()
    def zero_(self, model: nn.Module, dead: torch.Tensor) -> None:
        """Set every producer row of the ``dead`` channels (bool mask of ``width``) to zero."""
        dead = dead.to(torch.bool).cpu()
        for p, rows, channels in self.tensors(model):
            hit = dead[channels.cpu()].to(rows.device)
            p.data.index_fill_(0, rows[hit], 0)


@dataclass(frozen=True)
class Structure:
    """The channel groups of one network, in forward order, and the graph they came from."""

    groups: tuple[ChannelGroup, ...]
    graph: tp.DependencyGraph
    kept: tuple[str, ...] = ()  # conv/linear layers whose channels pass a channel shuffle: kept whole

    def names(self) -> list[str]:
        return [g.name for g in self.groups]

    def group(self, name: str) -> ChannelGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise SweepError(f"{name!r} is not a channel group root; allowed: {', '.join(self.names())}")

    def widths(self) -> dict[str, int]:
        return {g.name: g.width for g in self.groups}


def channel_groups(model: nn.Module, example_input: torch.Tensor) -> Structure:
    """The coupled channel groups of ``model`` (output layer and input channels excluded).

    ``example_input`` is one batch the model accepts. Raises SweepError for a network the analysis
    cannot follow. The model's parameters, train/eval modes and ``requires_grad`` flags are left as found."""
    names = {m: n for n, m in model.named_modules()}
    _check_layers(model)
    with deadline(f"the channel analysis of {type(model).__name__}"):
        graph = _trace_once_each(model, example_input, names)
        mixing = mixing_nodes(graph)
        for node in mixing:
            node.dependencies = []  # a group stops where the channel axis moves (and is then kept whole)
        _check_ops(graph, names, mixing)
        with tolerant_mapping():
            tp_groups = list(graph.get_all_groups(root_module_types=ROOT_TYPES))
    order = {n: i for i, n in enumerate(names.values())}
    groups, kept = [], []
    for tp_group in tp_groups:
        if any(item.dep.target in mixing for item in tp_group):
            # channels that pass a channel shuffle are kept whole
            kept.extend(
                names[i.dep.target.module] for i in tp_group if isinstance(i.dep.target.module, ROOT_TYPES)
            )
            continue
        group = _from_tp_group(graph, tp_group, names)
        if group is not None:
            groups.append(group)
    groups.sort(key=lambda g: order[g.name])
    return Structure(tuple(groups), graph, tuple(sorted(set(kept), key=order.__getitem__)))


def trace(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Torch-Pruning's DependencyGraph of ``model``, built with gradients on for every parameter."""
    with _tracing(model), torch.enable_grad(), tolerant_mapping():
        # forward_fn: without one Torch-Pruning first tries model(*example_inputs), which would unbatch a
        # tensor of batch 1, and retries any failure another way, which would hide the real error
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=example_input, forward_fn=_call, verbose=False
        )


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


@contextmanager
def _tracing(model: nn.Module) -> Iterator[None]:
    # The graph is read from autograd, so frozen parameters would hide their layers; tracing also puts
    # the model in eval mode, which would silently change a model that is being trained.
    modes = {m: m.training for m in model.modules()}
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(False)
        for m, training in modes.items():
            m.training = training


def _check_layers(model: nn.Module) -> None:
    for name, m in model.named_modules():
        where = f"layer {name or '(the model itself)'!r} ({type(m).__name__})"
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and not m.affine:
            raise SweepError(f"{where} has no gamma/beta, so its channels cannot be zeroed; use affine=True")
        if isinstance(m, nn.LayerNorm | nn.GroupNorm | nn.LocalResponseNorm):
            raise SweepError(
                f"{where} normalises over channels: removing a channel changes the statistics of the others, "
                "so removal is not exact; supported norms: BatchNorm1d/2d (per channel)"
            )
        if not any(True for _ in m.parameters(recurse=False)):
            continue
        if type(m) not in PRODUCER_TYPES and not _batchnorm_act(m):
            raise SweepError(
                f"{where} holds parameters the channel analysis cannot follow; supported: {SUPPORTED_LAYERS}"
            )
        if isinstance(m, nn.Conv2d) and m.groups == m.out_channels > 1 and m.in_channels != m.out_channels:
            raise SweepError(
                f"{where} is a grouped conv with one output channel per group ({m.groups} groups, "
                f"{m.in_channels} -> {m.out_channels}); supported: groups=1, depthwise with out_channels == "
                "in_channels, or groups with several output channels each"
            )


# What a BatchNorm subclass may apply after normalising (timm's BatchNormAct2d: drop, then act): modules
# that act on each channel alone and keep a zero channel zero.
ZERO_SAFE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Hardtanh,
    nn.Hardswish, nn.Mish, nn.Dropout, nn.Dropout2d,
)  # fmt: skip


def _batchnorm_act(m: nn.Module) -> bool:
    """timm's BatchNormAct2d (a BatchNorm2d with only gamma and beta of its own, followed inside by zero-safe
    modules only: ReLU, SiLU, ...) or its Linear (an nn.Linear whose forward only casts)."""
    if isinstance(m, nn.Linear) and type(m).__name__ == "Linear" and type(m).__module__.startswith("timm."):
        return True
    if not isinstance(m, nn.BatchNorm2d) or type(m).__name__ != "BatchNormAct2d":
        return False
    own = {n for n, _ in m.named_parameters(recurse=False)}
    return own <= {"weight", "bias"} and all(isinstance(c, ZERO_SAFE_MODULES) for c in m.children())


def _trace_once_each(
    model: nn.Module, example_input: torch.Tensor, names: dict[nn.Module, str]
) -> tp.DependencyGraph:
    """``trace``, refusing an input the model cannot take and a layer called more than once (the graph
    has one node per module, so a reused layer's two uses would be taken for one)."""
    calls: dict[nn.Module, int] = {}

    def count(module: nn.Module, _inputs: object, _output: object) -> None:
        calls[module] = calls.get(module, 0) + 1

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, PRODUCER_TYPES)]
    try:
        graph = trace(model, example_input)
    except (RuntimeError, ValueError, TypeError) as err:
        raise SweepError(
            f"the model cannot take the example input of shape {tuple(example_input.shape)}: "
            f"{quote(str(err).splitlines()[0] if str(err) else type(err).__name__)}"
        ) from None
    except (ArithmeticError, LookupError, AssertionError) as err:  # the graph library failing on this graph
        raise library_failure(model, lambda: _forward_with(model, example_input), names, err) from None
    finally:
        for h in hooks:
            h.remove()
    reused = [names[m] for m, n in calls.items() if n > 1]
    if reused:
        raise SweepError(
            f"layer {reused[0]!r} is called more than once per forward pass; each layer must be used once"
        )
    return graph


def _forward_with(model: nn.Module, example_input: torch.Tensor) -> object:
    with _tracing(model), torch.enable_grad():
        return model.eval()(example_input)


def _op_name(node: tp.Node) -> str:
    grad_fn = node.grad_fn
    return grad_fn.name() if hasattr(grad_fn, "name") else type(grad_fn).__name__


def _nearest_layer(node: tp.Node, names: dict[nn.Module, str]) -> str | None:
    """The named layer closest upstream of ``node``, to say where an op sits."""
    stack, seen = list(node.inputs), set()
    while stack:
        n = stack.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if isinstance(n.module, nn.Module) and n.module in names:
            return names[n.module]
        stack.extend(n.inputs)
    return None


def _check_ops(graph: tp.DependencyGraph, names: dict[nn.Module, str], mixing: set[tp.Node]) -> None:
    bn_params = {id(p) for m in names if isinstance(m, nn.BatchNorm2d) for p in m.parameters(recurse=False)}
    for node in graph.module2node.values():
        if _inner_batchnorm(node, bn_params):
            continue  # the normalisation inside a BatchNormAct2d, whose gamma and beta are in the group
        if (
            node in mixing
            or node.type in FOLLOWED_TYPES
            or (isinstance(node.module, nn.Module) and node.module in names)
        ):
            continue
        op = _op_name(node)
        if node.type == tp.ops.OPTYPE.ELEMENTWISE and (_zero_safe(node, op) or _gate(node, op)):
            continue
        after = _nearest_layer(node, names)
        where = f" after layer {after!r}" if after else " on the input"
        custom = getattr(node.grad_fn, "_forward_cls", None)  # a torch.autograd.Function of its own
        if custom is not None:
            op = f"{op} (the custom autograd function {custom.__qualname__}, which it cannot see into)"
        raise SweepError(
            f"op {op}{where} is not one the channel analysis can follow (it must act on each channel "
            "alone and keep a zero channel zero: relu-like activations, pooling, add/mul of feature maps, "
            "cat, flatten)"
        )


def _inner_batchnorm(node: tp.Node, bn_params: set[int]) -> bool:
    """A batch-norm op whose gamma and beta belong to a BatchNorm module of the model: its channel is zero
    when gamma and beta are (the module is in the channel's group)."""
    if VERSION_SUFFIX.sub("", _op_name(node)) not in ("NativeBatchNorm", "CudnnBatchNorm"):
        return False
    leaves = [
        getattr(f, "variable", None) for f, _ in getattr(node.grad_fn, "next_functions", ()) if f is not None
    ]
    params = [v for v in leaves if isinstance(v, torch.Tensor)]
    return len(params) == 2 and all(id(p) in bn_params for p in params)


def _gate(node: tp.Node, op: str) -> bool:
    """A squeeze-excitation gate, ``x * sigmoid(...)``: the sigmoid maps a zero channel to 0.5, but all it
    feeds is a product with a feature map of the same group, whose zero channel keeps the product zero."""
    if VERSION_SUFFIX.sub("", op) not in GATE_OPS or not node.outputs:
        return False
    for out in node.outputs:
        if VERSION_SUFFIX.sub("", _op_name(out)) != "Mul" or len(out.inputs) != 2:
            return False
        if any(f is None for f, _ in getattr(out.grad_fn, "next_functions", ())):
            return False  # a product with a constant
        other = out.inputs[0] if out.inputs[1] is node else out.inputs[1]
        if other is node or VERSION_SUFFIX.sub("", _op_name(other)) in GATE_OPS:
            return False  # sigmoid(a) * sigmoid(b) is not zero
    return True


def _zero_safe(node: tp.Node, op: str) -> bool:
    base = VERSION_SUFFIX.sub("", op)
    if base not in ZERO_SAFE_OPS:
        return False
    grad_fn = node.grad_fn
    inputs = [f for f, _ in getattr(grad_fn, "next_functions", ())]
    if base in ("Add", "Sub"):
        # x + constant turns a zero channel into the constant
        return len(inputs) == 2 and all(f is not None for f in inputs)
    if base == "T":
        # a linear layer's weight transposed; a transposed feature map would mix channels with the batch
        return all(f is None or f.name().startswith("torch::autograd::AccumulateGrad") for f in inputs)
    if base == "Div":
        return len(inputs) < 2 or inputs[1] is None  # a zero channel divided by itself is NaN
    if base == "Mean":
        dims = getattr(grad_fn, "_saved_dim", None)
        sizes = getattr(grad_fn, "_saved_self_sym_sizes", None)
        if dims is None or sizes is None:
            return False
        ndim = len(sizes)
        return all((d - 2**64 if d >= 2**63 else d) % ndim >= 2 for d in dims)
    return True


def _from_tp_group(
    graph: tp.DependencyGraph, tp_group: tp.Group, names: dict[nn.Module, str]
) -> ChannelGroup | None:
    slices: list[ParamSlice] = []
    layers: list[str] = []
    blocks: list[
        tuple[tuple[int, ...], tuple[int, ...], int, str]
    ] = []  # channels, conv rows, block size, conv
    concats: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    width = len(tp_group[0].idxs)
    for item in tp_group:
        dep = item.dep
        target = dep.target
        if not graph.is_out_channel_pruning_fn(dep.handler):
            if is_grouped(target.module):  # a grouped conv that reads the channels
                conv = target.module
                block = (conv.in_channels // conv.groups, names[conv])
                blocks.append(
                    (tuple(int(i) for i in item.root_idxs), tuple(int(i) for i in item.idxs), *block)
                )
            continue  # a layer that reads the channels
        if not target.outputs:
            return None  # the channels are the network's output: the classifier's classes
        rows = tuple(int(i) for i in item.idxs)
        channels = tuple(int(i) for i in item.root_idxs)
        if target.type == tp.ops.OPTYPE.CONCAT:
            concats.append((channels, rows))
            continue
        module = target.module
        if not isinstance(module, PRODUCER_TYPES):
            continue
        name = names[module]
        if isinstance(module, ROOT_TYPES):
            layers.append(name)
        if is_grouped(module):
            blocks.append((channels, rows, module.out_channels // module.groups, name))
        for pname, p in module.named_parameters(recurse=False):
            if p is not None:
                if rows and max(rows) >= p.shape[0]:
                    raise SweepError(
                        f"layer {name!r}: the channel analysis maps its channels to row {max(rows)} of "
                        f"{p.shape[0]} (a split or concatenation it cannot follow), which is not supported"
                    )
                slices.append(ParamSlice(name, pname, channels, rows))
    if not layers:
        return None
    order = {n: i for i, n in enumerate(names.values())}
    layers.sort(key=order.__getitem__)
    # The root is the first layer that writes every channel of the group (a depthwise conv reading a
    # concatenation writes them all, the layers feeding the concatenation each a part); channel k of the
    # group is row k of its root layer, where Torch-Pruning counts from the layer it started at.
    weights = {s.module: s for s in slices if s.param == "weight"}
    full = [
        n for n in layers if len(weights[n].rows) == width and sorted(weights[n].rows) == list(range(width))
    ]
    if not full:
        raise SweepError(
            f"layer {layers[0]!r}: its channels are only partly coupled (no layer writes all {width} channels "
            "of its group), which is not supported"
        )
    layers.remove(full[0])
    layers.insert(0, full[0])
    root = weights[full[0]]
    to_root = dict(zip(root.channels, root.rows, strict=True))
    slices = [
        ParamSlice(s.module, s.param, tuple(to_root[c] for c in s.channels), s.rows)
        for s in sorted(slices, key=lambda s: (order[s.module], s.param != "weight", s.param))
    ]
    concat_rows = tuple(
        tuple(r for _, r in sorted(zip((to_root[c] for c in chans), rows, strict=True)))
        for chans, rows in concats
    )
    return ChannelGroup(
        layers[0],
        width,
        tuple(slices),
        tuple(layers),
        concat_rows,
        _block_ids(layers[0], width, blocks, to_root),
    )


def is_grouped(module: object) -> bool:
    """A conv with groups that are not depthwise (each group reads several channels): removal must take as
    many channels from each of its groups."""
    return isinstance(module, nn.Conv2d) and 1 < module.groups < module.out_channels


def _block_ids(
    root: str,
    width: int,
    blocks: list[tuple[tuple[int, ...], tuple[int, ...], int, str]],
    to_root: dict[int, int],
) -> tuple[int, ...]:
    """A block id per channel of the group: channels the grouped convs reading or writing them see in one
    of their groups share an id (the finest common split when several convs agree on the channels' order)."""
    if not blocks:
        return ()
    orders = {
        tuple(sorted(zip((to_root[c] for c in chans), rows, strict=True))) for chans, rows, _, _ in blocks
    }
    if len(orders) > 1 or len(next(iter(orders))) != width:
        raise SweepError(
            f"layer {root!r}: its channels reach the grouped conv {blocks[0][3]!r} in another order or only "
            "partly, which is not supported"
        )
    size = math.gcd(*(b for _, _, b, _ in blocks))
    return tuple(row // size for _, row in next(iter(orders)))
