"""Quantisation variants and conversion options: the one list ``--quant`` accepts.

A :class:`Variant` says how a Keras model becomes a ``.tflite``: its converter (by import
path, resolved lazily so ``tinyloc --help`` loads no TensorFlow), whether it needs
calibration windows, whether its inputs and outputs are int8, whether TFLM can run it,
and an optional step that changes the model first (QAT's fine-tuning). ``convert()``,
``tinyloc convert``, ``tinyloc sweep`` and the report read this registry; a new variant is
one converter function plus one :func:`register_variant` line::

    register_variant(Variant(
        name="int8-trimmed", summary="int8, 5 % of calibration windows trimmed",
        converter="my_variants:convert_trimmed",   # (graph, windows, options) -> (bytes, report)
        calibrated=True, int8_io=True, runs_in_tflm=True,
    ))

:class:`ConvertOptions` holds every option a conversion takes, with one set of defaults and
one set of command-line flags shared by ``convert`` and ``sweep``, so an option reaches the
sweep as soon as it exists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.registry import Registry, resolve


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str  # what it stands for (docs/compression.md)
    converter: str  # "module:function": (graph, windows | None, ConvertOptions) -> (bytes, report dict)
    calibrated: bool  # needs representative training windows
    int8_io: bool  # int8 input and output tensors, checked after conversion
    runs_in_tflm: bool  # TFLM has kernels for every op it makes
    prepare: str | None = None  # "module:function" (model, X, y, validation, options) -> (model, report)
    in_sweep: bool = True  # float32 is not: a run's own Keras model is its float score
    colour: str = "tab:purple"  # matplotlib colour of its points in the report plots
    # The step model's quantization (compression/streaming.py) for a streaming variant: one
    # sample per call, scored on whole streams with the online decoder. None: a window model.
    streaming: str | None = None
    families: tuple[str, ...] = ()  # the model families it applies to (empty: every family)

    def applies_to(self, family: str, steps: int, members: int = 1) -> bool:
        """Whether a run of ``family`` on windows of ``steps`` samples (an ensemble of
        ``members`` encoders when more than one) has this variant."""
        if self.families and family not in self.families:
            return False
        # a stream needs a time axis; an ensemble's step model (every member's state) is not built
        return not (self.streaming and (steps < 2 or members > 1))

    def convert_function(self):
        return resolve(self.converter)

    def prepare_function(self):
        return resolve(self.prepare) if self.prepare else None


VARIANTS: Registry[Variant] = Registry("quantization")
register_variant = VARIANTS.register
unregister_variant = VARIANTS.unregister
variant_names = VARIANTS.names
get_variant = VARIANTS.get


def calibrated_variant_names(streaming: bool = False) -> tuple[str, ...]:
    """Variants whose activations are integer (calibrated): the candidates for an MCU budget;
    the window models' by default, the streaming step models' with ``streaming``."""
    return tuple(variant.name for variant in VARIANTS.entries()
                 if variant.calibrated and bool(variant.streaming) == streaming)


def window_variant_names() -> tuple[str, ...]:
    """What ``tinyloc convert --quant`` takes for a window model."""
    return tuple(variant.name for variant in VARIANTS.entries() if not variant.streaming)


def sweep_variant_names() -> tuple[str, ...]:
    return tuple(variant.name for variant in VARIANTS.entries() if variant.in_sweep)


_CONVERT = "tinyloc_tf.compression.convert"
register_variant(Variant("float32", "no quantization (the paper's baseline)", f"{_CONVERT}:convert_float32",
                         calibrated=False, int8_io=False, runs_in_tflm=True, in_sweep=False, colour="tab:grey"))
register_variant(Variant("int8", "full-integer post-training quantization (the paper's static)",
                         f"{_CONVERT}:convert_int8", calibrated=True, int8_io=True, runs_in_tflm=True,
                         colour="tab:blue"))
register_variant(Variant("dynamic", "int8 weights, float activations (the paper's dynamic; LiteRT only)",
                         f"{_CONVERT}:convert_dynamic", calibrated=False, int8_io=False, runs_in_tflm=False,
                         colour="tab:orange"))
register_variant(Variant("selective", "int8 except outlier ops kept in float (the LLM.int8() analogue)",
                         f"{_CONVERT}:convert_selective", calibrated=True, int8_io=False, runs_in_tflm=True,
                         colour="tab:green"))
register_variant(Variant("qat", "quantization-aware fine-tuning, then int8", f"{_CONVERT}:convert_int8",
                         calibrated=True, int8_io=True, runs_in_tflm=True,
                         prepare="tinyloc_tf.compression.qat:prepare", colour="tab:red"))
# Sweep-only: ``tinyloc convert RUN --streaming --quant int8|int16x8`` makes the same files.
_STREAM = "tinyloc_tf.compression.streaming:convert_streaming"
register_variant(Variant("stream-int8", "Mamba step model, int8 state, scored on whole streams (docs/streaming.md)",
                         _STREAM, calibrated=True, int8_io=True, runs_in_tflm=True, colour="tab:cyan",
                         streaming="int8", families=("mamba",)))
register_variant(Variant("stream-int16x8", "Mamba step model, int16 activations and state, int8 weights",
                         _STREAM, calibrated=True, int8_io=False, runs_in_tflm=True, colour="tab:olive",
                         streaming="int16x8", families=("mamba",)))


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ConvertOptions:
    """Every option of a conversion (the defaults are the command line's)."""

    representative_size: int = 256  # calibration windows (a seeded subset of train)
    seed: int = 0  # of that subset and of QAT
    calibration_trim: float = 0.0  # percent of the most extreme windows left out of calibration
    per_tensor_weights: bool = False  # one int8 scale per weight tensor instead of one per output channel
    selective_threshold: float = 0.7  # selective: rmse/scale above which an op stays float
    qat_epochs: int = 3
    qat_lr: float = 1e-4
    qat_batch_size: int = 64
    # How a sweep scores its streaming variants (stream-*): fixed-lag Viterbi with this lag,
    # the state reset to zero every that many samples (0: never). Not conversion settings:
    # ``tinyloc evaluate --streaming`` takes them as --lags / --reset-every.
    stream_lag: int = 10
    stream_reset_every: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> ConvertOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise TinylocError(f"unknown conversion option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**(values or {}))

    def convert_kwargs(self) -> dict:
        """These options as :func:`~tinyloc_tf.compression.convert.convert`'s keyword arguments."""
        return {
            "representative_size": self.representative_size, "seed": self.seed,
            "calibration_trim": self.calibration_trim, "selective_threshold": self.selective_threshold,
            "per_tensor_weights": self.per_tensor_weights,
            "qat_options": {"epochs": self.qat_epochs, "lr": self.qat_lr, "batch_size": self.qat_batch_size},
        }


def add_convert_arguments(parser, *, with_seed: bool = True, sweep: bool = False) -> None:
    """The conversion flags of ``tinyloc convert`` and ``tinyloc sweep`` (one definition);
    ``sweep`` adds how the streaming variants are scored."""
    from tinyloc_tf.arguments import non_negative_float, non_negative_int, percent, positive_float, positive_int, seed

    d = ConvertOptions()
    group = parser.add_argument_group("conversion (every variant that uses the option)")
    group.add_argument("--representative-size", type=positive_int, default=d.representative_size,
                       help=f"training windows used for int8 calibration (seeded subset; default {d.representative_size})")
    if with_seed:
        group.add_argument("--seed", type=seed, default=d.seed,
                           help=f"seed of the representative subset and QAT (default {d.seed})")
    group.add_argument("--calibration-trim", type=percent, default=d.calibration_trim, metavar="PCT",
                       help="leave out of int8 calibration the PCT %% of training windows with the most "
                            "extreme emissions (default 0; see docs/compression.md)")
    group.add_argument("--per-tensor-weights", action="store_true",
                       help="one int8 scale per weight tensor, not per output channel: smaller files and "
                            "arenas, a different rounding (check it on validation; see docs/compression.md)")
    group.add_argument("--selective-threshold", type=non_negative_float, default=d.selective_threshold,
                       help=f"selective: keep ops in float whose rmse/scale exceeds this (default {d.selective_threshold})")
    group.add_argument("--qat-epochs", type=positive_int, default=d.qat_epochs,
                       help=f"qat: fine-tuning epochs (default {d.qat_epochs})")
    group.add_argument("--qat-lr", type=positive_float, default=d.qat_lr, help=f"qat: Adam learning rate (default {d.qat_lr:g})")
    group.add_argument("--qat-batch-size", type=positive_int, default=d.qat_batch_size,
                       help=f"qat: batch size (default {d.qat_batch_size})")
    if sweep:
        group.add_argument("--stream-lag", type=non_negative_int, default=d.stream_lag,
                           help=f"stream-*: score with fixed-lag Viterbi of this many samples (default {d.stream_lag})")
        group.add_argument("--stream-reset-every", type=non_negative_int, default=d.stream_reset_every, metavar="N",
                           help="stream-*: reset the state to zero every N samples, 0 never (default 0)")


def convert_options_from_args(args) -> ConvertOptions:
    defaults = ConvertOptions()
    return ConvertOptions.from_dict({f.name: getattr(args, f.name, getattr(defaults, f.name)) for f in fields(ConvertOptions)})
