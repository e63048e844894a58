"""The training recipe: optimiser, learning-rate schedule, regularisation and augmentation.

One :class:`Recipe` travels from the command line (``tinyloc train``/``distill``/``sweep``)
through the sweep's workers into :func:`~tinyloc_tf.training.trainer.train_run` and
:func:`~tinyloc_tf.training.distill.distill_run`, and is written into each run's
``config.json``. Defaults are the settings chosen on validation data (``docs/training.md``,
"Recipe"); ``Recipe.legacy()`` is the recipe of runs made before it existed (constant
learning rate, Adam, no augmentation) and is what a missing ``recipe`` field means.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields

from tinyloc_tf.errors import TinylocError

SCHEDULES = ("constant", "cosine")
# Recipe fields that runs written before them lack, with the value that means "off".
ADDED_LATER = {"ema": 0.0, "train_steps": 0, "shortcut": False, "sensitivity_db": 0.0, "slope": 0.0}


@dataclass(frozen=True)
class Recipe:
    """Everything about a training run except the data, the architecture and the seed.

    ``schedule``: ``constant`` or ``cosine`` (linear warm-up over ``warmup_epochs``, then
    cosine decay to 0 over the remaining epochs). ``weight_decay`` > 0 switches Adam to AdamW
    (decoupled decay). ``ema`` > 0 keeps an exponential moving average of the weights with
    that momentum per step (Polyak averaging, Keras' ``use_ema``): validation, the kept
    weights and a refit's final weights are the average's. ``dropout``: encoder dropout (None:
    the family's default). ``shortcut``: the encoder gets a linear map of the input added to its
    emissions (:class:`~tinyloc_tf.models.shortcut.LinearShortcut`); like dropout, an
    architecture switch the recipe carries because a sweep applies it to every run. The
    augmentation fields are
    :class:`~tinyloc_tf.models.augmentation.RSSIAugmentation`'s. ``train_steps`` > 0 trains
    on windows of that many consecutive samples cut from the training split's streams
    (:func:`~tinyloc_tf.data.streams.stream_windows`), so a recurrent model (Mamba) learns
    from longer contexts than the prepared windows it is scored on; 0 trains on the prepared
    windows.
    """

    schedule: str = "cosine"
    warmup_epochs: int = 2
    weight_decay: float = 1e-4
    dropout: float | None = None
    ap_dropout: float = 0.1
    noise_db: float = 2.0
    gain_db: float = 5.0
    slope: float = 0.0
    sensitivity_db: float = 0.0
    packet_drop: float = 0.0
    time_shift: int = 0
    ema: float = 0.0
    train_steps: int = 0
    shortcut: bool = False

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise TinylocError(f"unknown --schedule {self.schedule!r}; expected one of {', '.join(SCHEDULES)}")
        if self.warmup_epochs < 0:
            raise TinylocError(f"--warmup-epochs must be 0 or more, got {self.warmup_epochs}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise TinylocError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
        if not 0.0 <= self.ema < 1.0:
            raise TinylocError(f"--ema must be in [0, 1), got {self.ema}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise TinylocError(f"--dropout must be in [0, 1), got {self.dropout}")
        for name in ("ap_dropout", "slope", "packet_drop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TinylocError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(self, name)}")
        for name in ("noise_db", "gain_db", "sensitivity_db", "time_shift", "train_steps"):
            if not getattr(self, name) >= 0:
                raise TinylocError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")

    def check_family(self, *families: str) -> None:
        """``train_steps`` needs a recurrent family (``families.py``): one whose weights fit any
        window length. Given several (a sweep's), one of them must be."""
        from tinyloc_tf.families import family_names, get_family

        if self.train_steps and not any(get_family(family).recurrent for family in families):
            recurrent = ", ".join(name for name in family_names() if get_family(name).recurrent)
            raise TinylocError(f"--train-steps {self.train_steps}: {' and '.join(families)} cannot train on longer "
                               f"windows than {'they are' if len(families) > 1 else 'it is'} built for; "
                               f"recurrent families can ({recurrent})")

    def check_distillation(self) -> None:
        """Distilled students learn their teacher's targets per prepared window, so ``train_steps``
        (windows cut from the streams) cannot apply to them."""
        if self.train_steps:
            raise TinylocError(f"--train-steps {self.train_steps}: distilled students learn their teacher's "
                               f"targets on the prepared windows; turn distillation off or give --train-steps 0")

    def for_family(self, family: str) -> "Recipe":
        """This recipe as a run of ``family`` trains with it in a sweep: ``train_steps`` applies to
        the recurrent families; the others train on the prepared windows (``train_steps`` 0)."""
        from dataclasses import replace

        from tinyloc_tf.families import get_family

        return self if get_family(family).recurrent else replace(self, train_steps=0)

    @classmethod
    def legacy(cls) -> "Recipe":
        """The recipe of runs made before recipes existed."""
        return cls(schedule="constant", warmup_epochs=0, weight_decay=0.0, **no_augmentation())

    def to_dict(self) -> dict:
        return asdict(self)

    def changed_flags(self) -> list[str]:
        """The command-line flags where this recipe differs from today's defaults, in field
        order (``["--ema 0.998", "--train-steps 60"]``): how cards and reports name a recipe."""
        defaults = asdict(Recipe())
        changed = (flag_words(key, value) for key, value in asdict(self).items() if value != defaults[key])
        return [" ".join(f"{w:g}" if isinstance(w, float) else str(w) for w in words) for words in changed if words]

    @classmethod
    def from_dict(cls, values: dict | None) -> "Recipe":
        if values is None:
            return cls.legacy()
        known = {f.name for f in fields(cls)}
        # A field added after a run was written is off for that run, whatever today's default.
        values = {**ADDED_LATER, **values}
        return cls(**{key: value for key, value in values.items() if key in known})

    # ------------------------------------------------------------------ what it builds

    def optimizer(self, lr: float, epochs: int, steps_per_epoch: int):
        """Adam (or AdamW) with this recipe's schedule for ``epochs`` x ``steps_per_epoch``."""
        import keras

        rate = lr
        if self.schedule == "cosine":
            total = max(1, epochs * steps_per_epoch)
            warmup = min(self.warmup_epochs * steps_per_epoch, total - 1)
            rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0 if warmup else lr, decay_steps=total - warmup,
                warmup_target=lr if warmup else None, warmup_steps=warmup,
            )
        averaging = {"use_ema": True, "ema_momentum": self.ema} if self.ema > 0 else {}
        if self.weight_decay > 0:
            return keras.optimizers.AdamW(learning_rate=rate, weight_decay=self.weight_decay, **averaging)
        return keras.optimizers.Adam(learning_rate=rate, **averaging)

    def augmentation(self, scaling: dict, seed: int):
        """The training-time input augmentation layer, or None when every flag is off."""
        from tinyloc_tf.models.augmentation import RSSIAugmentation

        layer = RSSIAugmentation(scaling, ap_dropout=self.ap_dropout, noise_db=self.noise_db, gain_db=self.gain_db,
                                 slope=self.slope, sensitivity_db=self.sensitivity_db, packet_drop=self.packet_drop,
                                 time_shift=self.time_shift, seed=int(seed), name="augmentation")
        return layer if layer.active else None

    def family_options(self) -> dict:
        """``build_model`` keyword arguments this recipe sets (dropout when given, the shortcut when on)."""
        options = {} if self.dropout is None else {"dropout": float(self.dropout)}
        return {**options, "shortcut": True} if self.shortcut else options


def no_augmentation() -> dict:
    """The recipe fields that switch every augmentation off (``--no-augment``): each of
    :data:`~tinyloc_tf.models.augmentation.AUGMENTATION_FLAGS` at 0, of its field's type."""
    from tinyloc_tf.models.augmentation import AUGMENTATION_FLAGS

    return {f.name: type(f.default)(0) for f in fields(Recipe) if f.name in AUGMENTATION_FLAGS}


def flag_words(name: str, value) -> list:
    """The command-line words that set option ``name`` to ``value``: ``["--name", value]``, and for
    a switch (a bool) ``["--name"]`` when on and nothing when off."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        return [flag] if value else []
    return [flag, value]


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe's command-line flags (defaults from :class:`Recipe`)."""
    from tinyloc_tf.arguments import non_negative_float, non_negative_int

    default = Recipe()
    group = parser.add_argument_group("recipe (defaults chosen on validation data, docs/training.md)")
    group.add_argument("--schedule", choices=SCHEDULES, default=default.schedule,
                       help=f"learning-rate schedule: constant or cosine with warm-up (default {default.schedule})")
    group.add_argument("--warmup-epochs", type=non_negative_int, default=default.warmup_epochs,
                       help=f"linear warm-up epochs of the cosine schedule (default {default.warmup_epochs})")
    group.add_argument("--weight-decay", type=non_negative_float, default=default.weight_decay,
                       help=f"decoupled weight decay, AdamW (0: Adam; default {default.weight_decay:g})")
    group.add_argument("--ema", type=non_negative_float, default=default.ema,
                       help=f"momentum of the weights' exponential moving average, per step; the average is "
                            f"what is validated and kept (0: off; default {default.ema:g})")
    group.add_argument("--dropout", type=non_negative_float, default=None,
                       help="encoder dropout (default: the family's own, MDCSA 0.15, Mamba 0, MLP 0.3)")
    group.add_argument("--ap-dropout", type=non_negative_float, default=default.ap_dropout,
                       help=f"augmentation: probability a heard AP is dropped (default {default.ap_dropout:g})")
    group.add_argument("--noise-db", type=non_negative_float, default=default.noise_db,
                       help=f"augmentation: Gaussian RSSI noise sigma in dB (default {default.noise_db:g})")
    group.add_argument("--gain-db", type=non_negative_float, default=default.gain_db,
                       help=f"augmentation: per-scan/window device gain offset, uniform +-dB (default {default.gain_db:g})")
    group.add_argument("--slope", type=non_negative_float, default=default.slope,
                       help=f"augmentation: per-scan/window factor in [1-a, 1+a] on every reading's distance below "
                            f"the strongest, a receiver's response slope (default {default.slope:g})")
    group.add_argument("--sensitivity-db", type=non_negative_float, default=default.sensitivity_db,
                       help=f"augmentation: per-scan/window detection threshold up to this many dB above the "
                            f"not-heard floor; weaker readings are lost (default {default.sensitivity_db:g})")
    group.add_argument("--packet-drop", type=non_negative_float, default=default.packet_drop,
                       help=f"augmentation (windows): probability a step is lost and forward-filled "
                            f"(default {default.packet_drop:g})")
    group.add_argument("--time-shift", type=non_negative_int, default=default.time_shift,
                       help=f"augmentation (windows): most steps the RSSI moves against its labels "
                            f"(default {default.time_shift})")
    group.add_argument("--train-steps", type=non_negative_int, default=default.train_steps,
                       help="train on windows of N consecutive samples cut from the training streams (Mamba; "
                            "in a sweep the Mamba runs, MDCSA keeps the prepared windows; validation still scores "
                            f"the prepared windows; 0: train on the prepared windows; default {default.train_steps})")
    group.add_argument("--shortcut", action="store_true",
                       help="add a linear map of the input to the encoder's emissions (wide and deep: F*K+K "
                            "parameters; helps where the hidden width is below the number of classes)")
    group.add_argument("--no-augment", action="store_true", help="switch every augmentation off")


def recipe_from_args(args) -> Recipe:
    values = {f.name: getattr(args, f.name) for f in fields(Recipe)}
    if getattr(args, "no_augment", False):
        values.update(no_augmentation())
    return Recipe(**values)
