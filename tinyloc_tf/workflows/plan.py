"""A sweep's plan: which runs to train, which teacher to pick, whom to distil it into, and
which ensembles of seeds to assemble.

Grids and parameter counts come from the family registry (``tinyloc_tf/families.py``);
the variants a sweep can make from the variant registry (``compression/variants.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyloc_tf.compression.variants import sweep_variant_names
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import family_names, get_family, grid_names
from tinyloc_tf.param_counts import shortcut_param_count

DEFAULT_VARIANTS = ("int8", "dynamic")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a baseline training run, a distilled student, an extra seed of a
    baseline (``seed_offset`` k > 0: a member, kept in ``SWEEP/members``, never a candidate
    itself) or an ensemble of the first ``members`` seeds of a configuration."""

    family: str
    hidden: int
    layers: int
    teacher: str | None = None  # run name of the teacher; None for a baseline run
    seed_offset: int = 0  # the sweep's seed + this; > 0 only for ensemble members
    members: int = 1  # > 1: an ensemble of seeds 0 .. members-1 (offsets) of this configuration

    @property
    def config(self) -> str:
        return f"{self.family}-H{self.hidden}L{self.layers}"

    @property
    def name(self) -> str:
        if self.members > 1:
            return f"{self.config}-x{self.members}"
        if self.seed_offset:
            return f"{self.config}-seed+{self.seed_offset}"
        return self.config + ("-kd" if self.teacher else "")

    @property
    def is_member(self) -> bool:
        return self.seed_offset > 0

    def member_specs(self) -> list["RunSpec"]:
        """An ensemble's members: the configuration's own run (offset 0) first."""
        return [RunSpec(self.family, self.hidden, self.layers, seed_offset=k) for k in range(self.members)]


def param_count(family: str, features: int, classes: int, hidden: int, layers: int, shortcut: bool = False) -> int:
    """Trainable parameters of a configuration (the family's formula, ``families.py``), with
    its linear shortcut's when it has one (``--shortcut``)."""
    extra = shortcut_param_count(features, classes) if shortcut else 0
    return get_family(family).count_params(features, classes, hidden, layers) + extra


def comma_names(text: str) -> tuple[str, ...]:
    """``"a, b,a"`` -> ``("a", "b")``: the distinct non-empty names of a comma-separated option."""
    return tuple(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))


def check_families(family: str) -> tuple[str, ...]:
    """``--family``: a registered family, a comma-separated list of them, ``both`` (the paper's
    MDCSA and Mamba, ``Family.paper``: what every sweep before the MLP family ran) or ``all``
    (every registered family)."""
    if family == "all":
        return family_names()
    names = (tuple(name for name in family_names() if get_family(name).paper) if family == "both"
             else comma_names(str(family).lower()))
    unknown = [name for name in names if name not in family_names()]
    if unknown or not names:
        raise TinylocError(f"unknown --family {(unknown or [family])[0]!r}; expected {', '.join(family_names())}, "
                           "a comma-separated list of them, both (mdcsa and mamba) or all (every family)")
    return names


def parse_variants(text: str | None) -> tuple[str, ...]:
    """``"int8,dynamic"`` -> ``("int8", "dynamic")``; ``"none"`` or ``""`` -> no compression phase."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    names = comma_names(text)
    unknown = [name for name in names if name not in sweep_variant_names()]
    if unknown:
        hint = " (the float32 model is the run itself)" if "float32" in unknown else ""
        raise TinylocError(f"unknown --quant variant {unknown[0]!r}{hint}; "
                           f"choose from {', '.join(sweep_variant_names())} or none")
    return names


def plan_baseline_runs(families, grid: str, features: int, classes: int, max_params: int | None,
                       shortcut: bool = False) -> list[RunSpec]:
    """The grid's configurations per family with at most ``max_params`` trainable parameters
    (``shortcut``: counting the linear shortcut every run gets)."""
    if grid not in grid_names():
        raise TinylocError(f"unknown grid {grid!r}; expected one of {', '.join(grid_names())}")
    specs = []
    for family in families:
        for hidden, layers in get_family(family).grids.get(grid, ()):
            if max_params is None or param_count(family, features, classes, hidden, layers, shortcut) <= max_params:
                specs.append(RunSpec(family, hidden, layers))
    return specs


def plan_ensembles(baselines: list[RunSpec], largest: int, features: int, classes: int,
                   max_params: int | None, shortcut: bool = False) -> tuple[list[RunSpec], list[RunSpec]]:
    """``(extra seeds to train, ensembles to assemble)`` for ensembles of 2 .. ``largest``
    seeds of each configuration, skipping those whose members together have more than
    ``max_params`` trainable parameters (the CRF counted once per member: an upper bound)."""
    members, ensembles = [], []
    for spec in baselines:
        params = param_count(spec.family, features, classes, spec.hidden, spec.layers, shortcut)
        sizes = [n for n in range(2, largest + 1) if max_params is None or n * params <= max_params]
        if not sizes:
            continue
        ensembles += [RunSpec(spec.family, spec.hidden, spec.layers, members=n) for n in sizes]
        members += [RunSpec(spec.family, spec.hidden, spec.layers, seed_offset=k) for k in range(1, max(sizes))]
    return members, ensembles


def pick_teacher(results: dict[str, dict], family: str) -> str | None:
    """The family's baseline run with the best *validation* macro-F1 (ties: fewer params).

    Test scores are in ``results`` too; they are never looked at here.
    """
    candidates = [
        (metrics["val_macro_f1"], -metrics["params"], name)
        for name, metrics in results.items()
        if metrics.get("family") == family and "distill" not in metrics and "ensemble" not in metrics
        and not name.endswith("-kd")
    ]
    return max(candidates)[2] if candidates else None


def plan_students(baselines: list[RunSpec], results: dict[str, dict], teacher: str) -> list[RunSpec]:
    """Every trained configuration of the teacher's family with fewer parameters than the teacher."""
    teacher_params = results[teacher]["params"]
    family = results[teacher]["family"]
    return [
        RunSpec(spec.family, spec.hidden, spec.layers, teacher=teacher)
        for spec in baselines
        if spec.family == family and spec.name in results and results[spec.name]["params"] < teacher_params
    ]


