"""Run a ``.tflite`` on the host: TFLM (the tflite-micro wheel) or LiteRT, and size its arena.

::

    emissions = run_tflite("m.tflite", X, runtime="tflm")     # X float [N, T, F] -> float [N, T, K]
    arena = find_arena_bytes("m.tflite")                      # smallest tensor arena TFLM accepts
    report = evaluate_tflite("m.tflite", "data/house", split="test", runtime="tflm")

Both runtimes see one window at a time (the models are converted with a batch of 1, as
on the MCU). Float windows are quantized with the input tensor's scale and zero point
(rounding half away from zero, like TFLite's QUANTIZE kernel) and int8 emissions are
dequantized, so callers always deal in floats.

Arena search: TFLM reports no "bytes needed", and with too small an arena some models
make it crash (segfault) rather than fail cleanly. So every arena probe runs in a child
process (``python -m tinyloc_tf.deployment.host``): the child bisects and prints each probe
before trying it, and when it dies the parent counts that size as too small and starts a
new child from there. Host pointers are 64-bit, so a Cortex-M needs a little less.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyloc_tf.errors import TinylocError

RUNTIMES = ("tflm", "litert")

#: Arena for TFLM runs where the caller gives none: far above what any of our models needs;
#: the pages an arena does not use are never touched, so it costs nothing.
DEFAULT_ARENA_BYTES = 16 * 1024 * 1024
#: Largest arena the search tries before declaring the model unrunnable on TFLM.
MAX_ARENA_BYTES = 64 * 1024 * 1024

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class ArenaTooSmallError(TinylocError):
    """The given tensor arena cannot hold the model; ``needed`` is the smallest that can."""

    def __init__(self, given: int, needed: int):
        self.given = int(given)
        self.needed = int(needed)
        super().__init__(
            f"tensor arena of {self.given} bytes ({self.given / 1024:.1f} KB) is too small for this model: "
            f"TFLM needs {self.needed} bytes (--arena-kb {math.ceil(self.needed / 1024)})"
        )


class NotDeployableError(TinylocError):
    """TFLM cannot prepare the model at all (an op or type without a TFLM kernel, hybrid ops)."""


# --------------------------------------------------------------------------- model bytes / io


def model_bytes(model) -> bytes:
    """``model`` as flatbuffer bytes: bytes-like, or the path of a ``.tflite`` file."""
    from tinyloc_tf.compression.flatbuffer import model_bytes as _model_bytes

    return _model_bytes(model)


@dataclass
class TensorIO:
    """What a runtime needs to know about an input or output tensor."""

    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.int8, np.uint8, np.int16) and self.scale > 0


def round_half_away(values: np.ndarray) -> np.ndarray:
    """``std::round`` semantics (TFLite's QUANTIZE): halves round away from zero."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def quantize(x: np.ndarray, io: TensorIO) -> np.ndarray:
    """Float values -> the tensor's dtype with its scale / zero point (no-op for float tensors)."""
    x = np.asarray(x, dtype=np.float32)
    if not io.quantized:
        return x.astype(io.dtype, copy=False)
    info = np.iinfo(io.dtype)
    q = round_half_away(x.astype(np.float64) / io.scale) + io.zero_point
    return np.clip(q, info.min, info.max).astype(io.dtype)


def dequantize(y: np.ndarray, io: TensorIO) -> np.ndarray:
    """Tensor values -> float32 (``(q - zero_point) * scale`` for quantized tensors)."""
    y = np.asarray(y)
    if not io.quantized:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - io.zero_point) * np.float32(io.scale)).astype(np.float32)


def _io_from_details(shape, dtype, scales, zero_points) -> TensorIO:
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    zero_points = np.atleast_1d(np.asarray(zero_points, dtype=np.int64))
    if scales.size > 1:
        raise TinylocError("per-channel quantized model inputs/outputs are not supported")
    return TensorIO(
        shape=tuple(int(s) for s in shape),
        dtype=np.dtype(dtype),
        scale=float(scales[0]) if scales.size else 0.0,
        zero_point=int(zero_points[0]) if zero_points.size else 0,
    )


# --------------------------------------------------------------------------- runtimes


@contextlib.contextmanager
def captured_stderr():
    """Capture what C code writes to file descriptor 2 (TFLM's error log) into ``box[0]``."""
    box = [""]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield box
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            box[0] = sink.read().decode("utf-8", "replace")


def tflm_message(stderr_text: str) -> str:
    """The informative lines of TFLM's error log, joined (for error messages).

    A Python traceback in the log (a probe child that crashed) is reduced to its last line,
    the exception itself; messages never carry traceback text.
    """
    head, marker, tail = stderr_text.partition("Traceback (most recent call last):")
    if marker:
        last = [line for line in tail.splitlines() if line.strip() and not line.startswith(" ")]
        stderr_text = head + "\n" + (last[-1] if last else "")
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    text = "; ".join(lines[-6:])
    return text if len(text) <= 400 else text[:400] + " ..."


class _TFLMRunner:
    """tflite-micro's host interpreter (reference kernels), one window per invoke."""

    def __init__(self, buf: bytes, arena_bytes: int):
        from tflite_micro.python.tflite_micro import runtime

        with captured_stderr() as log:
            try:
                self.interpreter = runtime.Interpreter.from_bytes(buf, arena_size=int(arena_bytes))
                error = None
            except RuntimeError as exc:
                error = exc
        if error is not None:
            raise NotDeployableError(f"TFLM cannot prepare the model ({error}): {tflm_message(log[0])}")
        i, o = self.interpreter.get_input_details(0), self.interpreter.get_output_details(0)
        self.input = _io_from_details(i["shape"], i["dtype"], *_qp(i))
        self.output = _io_from_details(o["shape"], o["dtype"], *_qp(o))

    def __call__(self, x):
        self.interpreter.set_input(x, 0)
        self.interpreter.invoke()
        return self.interpreter.get_output(0)


def _qp(details):
    q = details.get("quantization_parameters") or {}
    return q.get("scales", []), q.get("zero_points", [])


class _LiteRTRunner:
    """LiteRT (``ai_edge_litert``), single-threaded so timings compare with TFLM."""

    def __init__(self, buf: bytes):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_content=buf, num_threads=1)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise TinylocError(f"LiteRT cannot load the model: {exc}") from exc
        i = self.interpreter.get_input_details()[0]
        o = self.interpreter.get_output_details()[0]
        self._in, self._out = i["index"], o["index"]
        qi, qo = i["quantization_parameters"], o["quantization_parameters"]
        self.input = _io_from_details(i["shape"], i["dtype"], qi["scales"], qi["zero_points"])
        self.output = _io_from_details(o["shape"], o["dtype"], qo["scales"], qo["zero_points"])

    def __call__(self, x):
        self.interpreter.set_tensor(self._in, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)


def make_runner(model, runtime: str = "tflm", arena_bytes: int | None = None):
    """A callable ``runner(x_quantized [1, T, F]) -> raw output`` with ``.input`` / ``.output`` TensorIO.

    For TFLM an ``arena_bytes`` that is too small raises :class:`ArenaTooSmallError` (checked
    in a child process first, so a crashing model cannot take the caller down).
    """
    buf = model_bytes(model)
    if runtime == "litert":
        return _LiteRTRunner(buf)
    if runtime != "tflm":
        raise TinylocError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if arena_bytes is None:
        return _TFLMRunner(buf, DEFAULT_ARENA_BYTES)
    arena_bytes = int(arena_bytes)
    if not arena_works(buf, arena_bytes):
        raise ArenaTooSmallError(arena_bytes, find_arena_bytes(buf))
    return _TFLMRunner(buf, arena_bytes)


def run_tflite(model, X, runtime: str = "tflm", arena_kb: float | None = None, progress: bool = False,
               where: str | None = None) -> np.ndarray:
    """Emissions of a ``.tflite`` on windows ``X`` float ``[N, T, F]`` -> float32 ``[N, T, K]``.

    ``runtime`` is ``"tflm"`` (host TFLM, what the MCU runs) or ``"litert"``. ``arena_kb``
    (TFLM only) enforces a tensor arena of that many KiB; too small raises
    :class:`ArenaTooSmallError` naming the size needed.
    """
    X = np.asarray(X, dtype=np.float32)
    arena = None if arena_kb is None else int(round(float(arena_kb) * 1024))
    runner = make_runner(model, runtime, arena)
    expected = runner.input.shape
    if len(expected) and expected[0] != 1:
        where = where or (str(model) if isinstance(model, (str, os.PathLike)) else "the model")
        raise TinylocError(f"{where}: its input takes {expected[0]} windows per call where a tinyloc model takes one "
                           f"(shape {tuple(expected)}); is the file damaged, or not made by tinyloc convert?")
    if X.ndim != len(expected) or tuple(X.shape[1:]) != tuple(expected[1:]):
        raise TinylocError(f"windows have shape {X.shape}, but the model takes {tuple(expected)} per window")
    out = np.empty((len(X), *runner.output.shape[1:]), dtype=np.float32)
    windows = range(len(X))
    if progress:
        from tqdm import tqdm

        windows = tqdm(windows, desc=f"{runtime} inference", unit="window", leave=False)
    for n in windows:
        q = quantize(X[n : n + 1], runner.input)
        out[n] = dequantize(runner(q), runner.output)[0]
    return out


# --------------------------------------------------------------------------- arena search


def _child_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinyloc_tf.deployment.host", *args]


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return env


def _run_child(model_path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            _child_command(str(model_path), *args),
            capture_output=True, text=True, timeout=timeout, env=_child_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise TinylocError(f"TFLM arena probe timed out after {timeout:.0f} s (arguments {args})") from exc


@contextlib.contextmanager
def _model_file(buf: bytes):
    with tempfile.TemporaryDirectory(prefix="tinyloc-arena-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(buf)
        yield path


def _parse_probes(stdout: str) -> tuple[list[tuple[str, int]], int | None]:
    """``(results, size being tried when the child stopped)`` from a child's stdout."""
    results, pending = [], None
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "probe":
            pending = int(parts[1])
        elif len(parts) >= 2 and parts[0] in ("ok", "fail"):
            results.append((parts[0], int(parts[1])))
            pending = None
    return results, pending


def arena_works(model, arena_bytes: int, timeout: float = 120.0) -> bool:
    """Whether TFLM allocates and invokes ``model`` in ``arena_bytes`` (tried in a child process)."""
    buf = model_bytes(model)
    with _model_file(buf) as path:
        done = _run_child(path, "check", str(int(arena_bytes)), timeout=timeout)
    results, _ = _parse_probes(done.stdout)
    return bool(results) and results[-1] == ("ok", int(arena_bytes)) and done.returncode == 0


def find_arena_bytes(model, max_bytes: int = MAX_ARENA_BYTES, timeout: float = 300.0) -> int:
    """Smallest tensor arena (bytes) in which host TFLM allocates and runs ``model``.

    Bisection in child processes (see the module docstring); the answer is re-checked in a
    fresh child (it works, one byte less does not). Raises :class:`NotDeployableError` when
    even ``max_bytes`` fails, with TFLM's own message (e.g. an op without an int8 kernel).
    """
    buf = model_bytes(model)
    with _model_file(buf) as path:
        first = _run_child(path, "check", str(int(max_bytes)), timeout=timeout)
        results, _ = _parse_probes(first.stdout)
        if not results or results[-1][0] != "ok":
            raise NotDeployableError(
                _not_deployable(buf, f"fails even with a {max_bytes // (1024 * 1024)} MiB arena: "
                                     f"{tflm_message(first.stderr) or f'exit status {first.returncode}'}")
            )
        lo, hi = 0, int(max_bytes)  # lo fails (or is 0), hi works
        for _ in range(64):  # each round ends with an answer or a crash that narrows the range
            if hi - lo <= 1:
                break
            done = _run_child(path, "bisect", str(lo), str(hi), timeout=timeout)
            results, crashed_at = _parse_probes(done.stdout)
            for status, size in results:
                if status == "ok":
                    hi = min(hi, size)
                else:
                    lo = max(lo, size)
            if crashed_at is not None:  # died while trying this size: too small
                lo = max(lo, crashed_at)
            elif done.returncode != 0:
                raise TinylocError(f"TFLM arena search failed: {tflm_message(done.stderr)}")
        verify = _run_child(path, "verify", str(hi), timeout=timeout)
        results, crashed_at = _parse_probes(verify.stdout)
        outcome = dict((size, status) for status, size in results)
        if crashed_at is not None:
            outcome[crashed_at] = "fail"
        if outcome.get(hi) != "ok" or outcome.get(hi - 1, "fail") != "fail":
            raise TinylocError(f"TFLM arena search is inconsistent around {hi} bytes: {outcome}")
    return hi


def printed_arena_bytes(model, arena_bytes: int = DEFAULT_ARENA_BYTES, timeout: float = 120.0) -> int | None:
    """The "Arena allocation total" TFLM's recording allocator prints (under-counts scratch)."""
    buf = model_bytes(model)
    with _model_file(buf) as path:
        done = _run_child(path, "report", str(int(arena_bytes)), timeout=timeout)
    match = re.search(r"Arena allocation total (\d+) bytes", done.stderr + done.stdout)
    return int(match.group(1)) if match else None


def _try_arena(buf: bytes, size: int) -> bool:
    """One probe inside the child: allocate, then invoke once on zeros."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        interpreter = runtime.Interpreter.from_bytes(buf, arena_size=int(size))
        details = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
        interpreter.invoke()
    except RuntimeError:
        return False
    return True


def _child_main(argv: list[str]) -> int:
    """``python -m tinyloc_tf.deployment.host MODEL (check N | bisect LO HI | verify N | report N)``."""
    path, mode, *sizes = argv
    buf = Path(path).read_bytes()
    sizes = [int(s) for s in sizes]

    def probe(size: int) -> bool:
        print(f"probe {size}", flush=True)  # printed first: if TFLM crashes, the parent knows where
        works = _try_arena(buf, size)
        print(f"{'ok' if works else 'fail'} {size}", flush=True)
        return works

    if mode == "check":
        return 0 if probe(sizes[0]) else 1
    if mode == "bisect":
        lo, hi = sizes
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if probe(mid):
                hi = mid
            else:
                lo = mid
        return 0
    if mode == "verify":
        probe(sizes[0])
        probe(sizes[0] - 1)
        return 0
    if mode == "report":
        from tflite_micro.python.tflite_micro import runtime

        interpreter = runtime.Interpreter.from_bytes(buf, arena_size=sizes[0])
        details = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
        interpreter.invoke()
        interpreter.print_allocations()
        return 0
    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------- evaluation


def tflm_blocker(model) -> str | None:
    """Why host TFLM cannot run ``model`` (tried in a child process), or ``None`` when it can."""
    buf = model_bytes(model)
    with _model_file(buf) as path:
        done = _run_child(path, "check", str(DEFAULT_ARENA_BYTES), timeout=120.0)
    results, _ = _parse_probes(done.stdout)
    if results and results[-1][0] == "ok":
        return None
    return _not_deployable(buf, tflm_message(done.stderr) or f"exit status {done.returncode}")


def crf_weights(model) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``transitions [K, K]``, ``start [K]``, ``end [K]`` from a ``.tflite``'s metadata."""
    from tinyloc_tf.compression.metadata import read_metadata

    crf = read_metadata(model)["crf"]
    return tuple(np.asarray(crf[key], dtype=np.float32) for key in ("transitions", "start", "end"))


def predict_paths(model, X, runtime: str = "tflm", arena_kb: float | None = None,
                  progress: bool = False, where: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(paths int32 [N, T], emissions float32 [N, T, K])`` of a ``.tflite`` on windows ``X``:
    run it (:func:`run_tflite`), then Viterbi with the CRF weights in its metadata."""
    from tinyloc_tf.decoding import viterbi_decode

    buf = model_bytes(model)
    where = where or (str(model) if isinstance(model, (str, os.PathLike)) else None)
    emissions = run_tflite(buf, X, runtime=runtime, arena_kb=arena_kb, progress=progress, where=where)
    return viterbi_decode(emissions, *crf_weights(buf)), emissions


def _not_deployable(buf: bytes, detail: str) -> str:
    from tinyloc_tf.compression.metadata import read_metadata

    try:
        quant = read_metadata(buf).get("quant")
    except TinylocError:
        quant = None
    why = " (dynamic-range quantization makes hybrid ops, which TFLite Micro rejects)" if quant == "dynamic" else ""
    return f"not deployable on TFLM{why}: {detail}"


def evaluate_tflite(
    model,
    data,
    split: str = "test",
    runtime: str = "tflm",
    arena_kb: float | None = None,
    run_dir=None,
    progress: bool = False,
) -> dict:
    """Score a ``.tflite`` on a prepared split, decoding Viterbi with the CRF in its metadata.

    ``data`` is a prepared folder or a loaded ``PreparedDataset``. Returns the JSON-ready
    dict ``tinyloc evaluate`` prints: ``macro_f1``, ``accuracy``, ``flash_bytes`` (file size),
    ``arena_bytes`` (TFLM, smallest that works), ``params``, ``agreement`` (with the Keras
    model of ``run_dir``, Viterbi paths, or ``None``), ``quant``, ``runtime`` and more.
    When TFLM cannot run the model (dynamic range, missing kernels) it is evaluated with
    LiteRT and ``tflm_deployable`` is false, with the reason in ``note``.
    """
    from tinyloc_tf.compression.metadata import metadata_bytes, read_metadata
    from tinyloc_tf.data import PreparedDataset, load_prepared
    from tinyloc_tf.training.metrics import score_paths

    if runtime not in RUNTIMES:
        raise TinylocError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    buf = model_bytes(model)
    meta = read_metadata(buf)
    dataset = data if isinstance(data, PreparedDataset) else load_prepared(data)
    part = dataset.split(split)
    _check_data_matches(meta, dataset)
    tagger = _load_run_for(run_dir, dataset, meta) if run_dir is not None else None

    report = {
        "model": None if isinstance(model, (bytes, bytearray, memoryview)) else str(model),
        "quant": meta.get("quant"),
        "family": meta.get("family"),
        "hidden": meta.get("hidden"),
        "layers": meta.get("layers"),
        "requested_runtime": runtime,
        "runtime": runtime,
        "split": split,
        "windows": int(len(part)),
        "flash_bytes": len(buf),
        "metadata_bytes": metadata_bytes(buf),
        "params": meta.get("params"),
        "arena_bytes": None,
        "tflm_deployable": None,
        "note": None,
        "data_matches_model": meta.get("data_sha256") in (None, dataset.fingerprint()),
    }
    if runtime == "tflm":
        try:
            report["arena_bytes"] = find_arena_bytes(buf)
            report["tflm_deployable"] = True
        except NotDeployableError as exc:
            report["tflm_deployable"] = False
            report["runtime"], report["note"] = "litert", str(exc)
            print(f"tinyloc evaluate: {exc}; evaluating with LiteRT instead", file=sys.stderr)
            if arena_kb is not None:
                report["note"] += "; --arena-kb ignored"
                arena_kb = None
        if arena_kb is not None and arena_kb * 1024 < report["arena_bytes"]:
            raise ArenaTooSmallError(int(round(arena_kb * 1024)), report["arena_bytes"])
        report["arena_kb_given"] = arena_kb
    else:
        blocker = tflm_blocker(buf)
        report["tflm_deployable"], report["note"] = blocker is None, blocker

    paths, emissions = predict_paths(buf, part.X, runtime=report["runtime"], arena_kb=arena_kb, progress=progress,
                                     where=report["model"])
    scores = score_paths(part.y, paths, list(meta.get("classes") or dataset.class_names))
    report.update(
        macro_f1=scores["macro_f1"],
        accuracy=scores["accuracy"],
        per_class_f1=scores["per_class_f1"],
        steps=scores["steps"],
        agreement=None,
    )
    if run_dir is not None:
        keras_paths, keras_emissions = _keras_paths(tagger, part.X)
        report["agreement"] = float(np.mean(keras_paths == paths))
        report["emission_max_abs_diff"] = float(np.max(np.abs(keras_emissions - emissions)))
        report["keras_macro_f1"] = score_paths(part.y, keras_paths, dataset.class_names)["macro_f1"]
    return report


def _check_data_matches(meta: dict, dataset) -> None:
    """The model's inputs must be the data's features in the same order, window and scaling."""
    if len(meta.get("features", [])) != dataset.num_features or int(meta.get("T", -1)) != dataset.steps:
        raise TinylocError(
            f"model takes windows of T={meta.get('T')} x F={len(meta.get('features', []))}, "
            f"but {dataset.path} has T={dataset.steps} x F={dataset.num_features}"
        )
    if list(meta["features"]) != list(dataset.meta["features"]):
        raise TinylocError(f"model feature order differs from {dataset.path}/meta.json 'features'")
    if len(meta.get("classes", [])) != dataset.num_classes:
        raise TinylocError(
            f"model has {len(meta.get('classes', []))} classes, {dataset.path} has {dataset.num_classes}"
        )
    scaling, data_scaling = meta.get("scaling") or {}, dataset.meta.get("scaling") or {}
    if scaling and data_scaling:
        from tinyloc_tf.data.representation import Representation

        model_rep, data_rep = Representation.from_meta(scaling), Representation.from_meta(data_scaling)
        if model_rep != data_rep:
            raise TinylocError(
                f"model was converted for {_representation_text(model_rep)} inputs, but {dataset.path} holds "
                f"{_representation_text(data_rep)} inputs; prepare the data with the model's representation"
            )
    for key in ("min", "max"):
        if key in scaling and key in data_scaling and not np.allclose(scaling[key], data_scaling[key]):
            raise TinylocError(
                f"model was converted with a different min-max scaling ('{key}') than {dataset.path}; "
                "its windows would be scaled differently"
            )


def _representation_text(rep) -> str:
    """``powed (floor -105 dBm, exponent 2.718)``: a representation in words, for errors."""
    details = [f"floor {rep.floor_dbm:g} dBm"]
    if rep.kind in ("powed", "relative"):
        details.append(f"exponent {rep.exponent:.4g}")
    if rep.reference_dbm is not None:
        details.append(f"reference {rep.reference_dbm:g} dBm")
    return f"{rep.kind} ({', '.join(details)})"


def _load_run_for(run_dir, dataset, meta: dict | None = None):
    """The Keras model of a training run folder, checked against ``dataset`` and, when the
    ``.tflite``'s metadata ``meta`` names its architecture, against that (before any scoring)."""
    from tinyloc_tf.training.artifacts import check_model_fits_data, load_run

    tagger, _ = load_run(Path(run_dir))
    check_model_fits_data(tagger, dataset, what=f"the model of {run_dir}")
    check_run_is_the_source(run_dir, tagger.build_config, meta or {})
    return tagger


def check_run_is_the_source(run_dir, build_config: dict, meta: dict) -> None:
    """``--run`` must hold the architecture the ``.tflite`` was converted from (family, width,
    depth, as its metadata records them): agreement with another model means nothing."""
    for key in ("family", "hidden", "layers"):
        if meta.get(key) is not None and build_config.get(key) is not None and meta[key] != build_config[key]:
            raise TinylocError(f"--run {run_dir}: its model is {build_config.get('family')} "
                               f"H{build_config.get('hidden')}L{build_config.get('layers')}, the .tflite's is "
                               f"{meta.get('family')} H{meta.get('hidden')}L{meta.get('layers')}; pass the run it was "
                               "converted from")


def _keras_paths(tagger, X) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi paths and emissions of a run's Keras model."""
    from tinyloc_tf.decoding import viterbi_decode

    emissions = tagger.emissions(X)
    return viterbi_decode(emissions, *tagger.crf.get_weights()), emissions


if __name__ == "__main__":
    from tinyloc_tf.lifetime import die_with_parent

    die_with_parent(os.getppid())  # a probe never outlives the command that asked for it
    sys.exit(_child_main(sys.argv[1:]))
