"""Static memory plan for the generated code.

Every activation tensor gets a byte offset in one arena. Tensors that are
only re-labellings of another (RESHAPE, contiguous slices) share its bytes;
an element-wise op may write over an input that dies at that op (in place).
The remaining buffers are packed by a greedy first-fit planner in the
spirit of TFLM's GreedyMemoryPlanner: largest buffers first, each at the
lowest offset that no buffer alive at the same time occupies.

The caller's input and output buffers are outside the arena: the model reads
its inputs where the caller keeps them and writes its outputs straight into the
caller's output buffers (a streaming step model has several of each: the
sample and the state in, the emissions and the new state out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyloc_tf.deployment.aot.lowering import Lowering
from tinyloc_tf.deployment.aot.reader import Graph
from tinyloc_tf.errors import TinylocError


@dataclass
class Buffer:
    """A region of the arena: ``size`` bytes live from step ``first`` to ``last``."""

    id: int
    size: int
    first: int
    last: int
    offset: int = 0
    tensors: list[int] = field(default_factory=list)


@dataclass
class Location:
    """Where a tensor's bytes are: in the arena (``buffer``), in a constant
    array (``const`` = tensor index of the constant), or in the caller's
    ``input`` / ``output`` buffer number ``io``; plus a byte offset within that
    base (for the arena: from the start of the arena, once planned)."""

    kind: str  # "arena" | "const" | "input" | "output"
    byte_offset: int
    buffer: int = -1
    const: int = -1
    io: int = 0


@dataclass
class MemoryPlan:
    locations: dict[int, Location]
    buffers: list[Buffer]
    arena_bytes: int
    final_copies: list[int]  # outputs that are views of another tensor: copied out at the end
    inplace_pairs: list[tuple[int, int]]

    @property
    def final_copy(self) -> int | None:
        """The first output copied out at the end (single-output models: the only one)."""
        return self.final_copies[0] if self.final_copies else None


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def greedy_plan(buffers: list[Buffer], alignment: int = 16, order: list[Buffer] | None = None) -> int:
    """Assign ``offset`` to every buffer; return the arena size needed. ``order``: the buffers
    in the order to place them (default: by size, largest first, then first use, then id)."""
    placed: list[Buffer] = []
    for b in order if order is not None else sorted(buffers, key=lambda b: (-b.size, b.first, b.id)):
        alive = sorted(
            (p for p in placed if p.first <= b.last and b.first <= p.last),
            key=lambda p: p.offset,
        )
        offset = 0
        for p in alive:
            if offset + b.size <= p.offset:
                break  # fits in the gap below p
            offset = max(offset, _align(p.offset + p.size, alignment))
        b.offset = offset
        placed.append(b)
    return max((b.offset + b.size for b in buffers), default=0)


def plan_memory(graph: Graph, lowering: Lowering, *, inplace: bool = True,
                alignment: int = 16) -> MemoryPlan:
    steps = lowering.steps
    if not graph.inputs or not graph.outputs:
        raise TinylocError("the model needs at least one input and one output tensor")
    graph_ins, graph_outs = list(graph.inputs), list(graph.outputs)

    alias_of = {a.tensor: (a.source, a.byte_offset) for a in lowering.aliases}

    def root(t: int) -> tuple[int, int]:
        off = 0
        seen = set()
        while t in alias_of:
            if t in seen:
                raise TinylocError(f"alias cycle at tensor {t}")
            seen.add(t)
            t, o = alias_of[t]
            off += o
        return t, off

    writer: dict[int, int] = {}
    for k, s in enumerate(steps):
        for w in s.writes:
            if w in writer:
                continue  # e.g. PAD: fill, then copy into the same tensor
            writer[w] = k

    # Roots: where bytes really live.
    buffers: dict[int, Buffer] = {}
    root_loc: dict[int, Location] = {}
    final_copies = []
    for position, graph_out in enumerate(graph_outs):
        out_root, _ = root(graph_out)
        if out_root in writer and out_root == graph_out and out_root not in root_loc:
            root_loc[graph_out] = Location("output", 0, io=position)
        else:
            final_copies.append(graph_out)

    def root_location(r: int) -> Location:
        if r in root_loc:
            return root_loc[r]
        t = graph.tensors[r]
        if r in graph_ins:
            loc = Location("input", 0, io=graph_ins.index(r))
        elif t.is_constant:
            loc = Location("const", 0, const=r)
        elif r in writer:
            b = Buffer(id=len(buffers), size=t.nbytes, first=writer[r], last=writer[r], tensors=[r])
            buffers[b.id] = b
            loc = Location("arena", 0, buffer=b.id)
        else:
            raise TinylocError(f"{t.describe()} is read but never written by any operator")
        root_loc[r] = loc
        return loc

    def location(t: int) -> Location:
        r, off = root(t)
        base = root_location(r)
        return Location(base.kind, base.byte_offset + off, base.buffer, base.const, base.io)

    for k, s in enumerate(steps):
        for t in s.reads + s.writes:
            location(t)
    for graph_out in graph_outs:
        location(graph_out)

    # Lifetimes: a buffer lives until the last step reading any tensor in it.
    for k, s in enumerate(steps):
        for t in s.reads:
            loc = location(t)
            if loc.kind == "arena":
                buffers[loc.buffer].last = max(buffers[loc.buffer].last, k)
    for final_copy in final_copies:
        loc = location(final_copy)
        if loc.kind == "arena":
            buffers[loc.buffer].last = len(steps)

    # In place: the output takes over a dying input's buffer.
    merged: dict[int, int] = {}
    pairs: list[tuple[int, int]] = []
    if inplace:
        for k, s in enumerate(steps):
            for out, inp in s.inplace:
                if out in alias_of or inp in alias_of:
                    continue  # only whole, un-aliased tensors
                lo, li = location(out), location(inp)
                if lo.kind != "arena" or li.kind != "arena" or lo.buffer == li.buffer:
                    continue
                bo, bi = buffers[lo.buffer], buffers[li.buffer]
                if bo.id in merged or len(bo.tensors) != 1 or writer.get(out) != k:
                    continue
                if bi.last != k or bi.size != bo.size:
                    continue
                others = [
                    t for t in s.reads if t != inp and location(t).kind == "arena"
                    and location(t).buffer == bi.id
                ]
                if others:
                    continue
                # Merge: every tensor of bo now lives in bi.
                bi.last = max(bi.last, bo.last)
                bi.tensors.extend(bo.tensors)
                root_loc[out] = Location("arena", 0, buffer=bi.id)
                merged[bo.id] = bi.id
                del buffers[bo.id]
                pairs.append((out, inp))
                break

    live = list(buffers.values())
    arena = greedy_plan(live, alignment)

    def absolute(t: int) -> Location:
        loc = location(t)
        if loc.kind == "arena":  # offsets so far were relative to the buffer
            loc.byte_offset += buffers[loc.buffer].offset
        return loc

    tensors = set(alias_of) | set(root_loc) | set(graph_outs)
    for s in steps:
        tensors.update(s.reads + s.writes)
    locations = {t: absolute(t) for t in tensors}
    return MemoryPlan(
        locations=locations,
        buffers=sorted(live, key=lambda b: b.offset),
        arena_bytes=arena,
        final_copies=final_copies,
        inplace_pairs=pairs,
    )
