"""Model families: the one list of what ``--model`` / ``--family`` accept.

A family is an encoder (``[B, T, F] -> [B, T, K]`` emissions) that
:class:`~tinyloc_tf.models.tagger.SequenceTagger` puts in front of the CRF head. Each
entry names, by import path, its encoder class and its parameter-count formula, and
carries its sweep grids and plot marker, so nothing else keeps a list of families::

    register_family(Family(
        name="gru",
        encoder="my_models.gru:GRUEncoder",            # keras Layer(features, classes, hidden,
                                                        #   layers, steps, int8_friendly, name)
        param_count="my_models.gru:gru_param_count",   # (features, classes, hidden, layers) -> int
        grids={"small": [(8, 1), (4, 1)]},
    ))

The encoder must end in a ``Dense(K)`` layer named ``head`` (feature distillation taps its
input). Entries are resolved lazily: importing this module loads no TensorFlow, so
``tinyloc --help`` stays fast. ``docs/architecture.md`` lists what else a family may add.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyloc_tf.registry import Registry, resolve


@dataclass(frozen=True)
class Family:
    name: str
    encoder: str  # "module:Class"
    param_count: str  # "module:function"
    grids: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # grid -> [(hidden, layers)]
    marker: str = "^"  # matplotlib marker of its points in the report plots
    title: str = ""  # how tables and plots write it ("MDCSA"); empty: the name
    paper: bool = False  # one of the paper's families: `--family both` sweeps these
    # A recurrence over time: its weights fit any window length, so it can train on longer
    # windows than it is scored on (--train-steps).
    recurrent: bool = False

    @property
    def display_name(self) -> str:
        return self.title or self.name

    def encoder_class(self):
        return resolve(self.encoder)

    def count_params(self, features: int, classes: int, hidden: int, layers: int) -> int:
        """Trainable parameters of a configuration (MODELS.md's formulas), without building it."""
        return int(resolve(self.param_count)(features, classes, hidden, layers))


FAMILIES: Registry[Family] = Registry("model family")
register_family = FAMILIES.register
unregister_family = FAMILIES.unregister
family_names = FAMILIES.names


def get_family(name: str) -> Family:
    return FAMILIES.get(str(name).lower())


def grid_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(grid for family in FAMILIES.entries() for grid in family.grids))


# The paper's grids (MODELS.md), a small grid that runs in minutes on a laptop, and
# "budget": the paper-grid configurations whose int8 form can fit the 32 / 64 KiB budgets on
# our datasets (MODELS.md sizes), at most two depths per width, which the results tables use.
register_family(Family(
    name="mdcsa",
    encoder="tinyloc_tf.models.mdcsa:MDCSAEncoder",
    param_count="tinyloc_tf.param_counts:mdcsa_param_count",
    grids={
        "paper": [(h, l) for h in (256, 128, 64, 32, 16, 8, 4, 2) for l in (3, 1)],
        "small": [(16, 1), (8, 1), (4, 1)],
        "budget": [(32, 1), (16, 3), (16, 1), (8, 3), (8, 1), (4, 1)],
    },
    marker="s",
    title="MDCSA",
    paper=True,
))
register_family(Family(
    name="mamba",
    encoder="tinyloc_tf.models.mamba:MambaEncoder",
    param_count="tinyloc_tf.param_counts:mamba_param_count",
    grids={
        "paper": [(h, l) for h in (1, 2, 4, 8, 16, 32, 64, 128) for l in (1, 2, 4)],
        "small": [(32, 1), (16, 1), (8, 1), (4, 1)],
        "budget": [(32, 2), (32, 1), (16, 2), (16, 1), (8, 1), (4, 1)],
    },
    marker="o",
    recurrent=True,
    title="Mamba",
    paper=True,
))
# Not in the paper: the standard fingerprinting network, one scan at a time (models/mlp.py).
# Its budget grid: the widths whose int8 form fits 32 / 64 KiB on UJIIndoorLoc (520 APs,
# 59 areas: H48L1 27,899 parameters, H96L1 55,643).
register_family(Family(
    name="mlp",
    encoder="tinyloc_tf.models.mlp:MLPEncoder",
    param_count="tinyloc_tf.param_counts:mlp_param_count",
    grids={
        "small": [(32, 1), (16, 1)],
        "budget": [(96, 1), (64, 2), (48, 1), (32, 2), (32, 1), (16, 1)],
    },
    marker="D",
    title="MLP",
))
