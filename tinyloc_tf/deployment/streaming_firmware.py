"""``tinyloc deploy --streaming``: a step model on the device over one recorded test stream.

::

    report = deploy_streaming("m_stream.tflite", target="m55", data_dir="data/house")

The exporter writes the stream and what the host expects of it (``GEN_DIR``):

==================  ==========================================================================
stream_data.h       geometry, tensor element types, state tensors (bytes, zero points), output
                    quantization, decoder
stream_settings.cc  CRF transitions and start scores, state sizes and zero points
test_stream.cc      the quantized samples, host TFLM's emissions and the Python decoder's path
test_stream.npz     the same arrays plus the labels, for the host side of the report
model_data.cc ...   the flatbuffer, its op resolver and activation tables (``export_c.model_sources``),
                    for the TFLM backend
==================  ==========================================================================

The step model's tensors are int8, or int16 for an int16x8 model (``convert --streaming
--quant int16x8``); both backends run either.

The firmware (``tflm_app/src/streaming_main.cc``, ``make HARNESS=streaming``) runs the stream
from a zero state, copying each state output back to its input byte for byte as
:class:`tinyloc_tf.deployment.streaming.StreamRunner` does, decodes online with the C decoder
and reports per sample: instructions, emissions equal to the host's, the decision.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from tinyloc_tf.deployment.targets import DEFAULT_TARGET, get_target
from tinyloc_tf.errors import TinylocError

STREAM_SOURCES = ("stream_data.h", "stream_settings.cc", "test_stream.cc")
#: Backends that implement src/streaming_runner.h.
STREAMING_BACKENDS = ("aot", "tflm")
#: numpy dtype -> C type of the step model's tensors the harness takes.
C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t"}


def pick_stream(data_dir, split: str = "test", stream: int | None = None, samples: int | None = None):
    """One continuous stream of a prepared split: ``stream`` by index (default the longest),
    cut to its first ``samples`` samples."""
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.streams import split_streams

    dataset = load_prepared(data_dir)
    streams = split_streams(dataset.split(split), name=split)
    if not streams:
        raise TinylocError(f"{data_dir}: the {split} split holds no stream")
    if stream is None:
        stream = int(np.argmax([len(s) for s in streams]))
    if not 0 <= stream < len(streams):
        raise TinylocError(f"--stream {stream}: the {split} split of {data_dir} has streams 0..{len(streams) - 1}")
    chosen = streams[stream]
    n = len(chosen) if samples is None else min(int(samples), len(chosen))
    return dataset, stream, chosen.X[:n], chosen.y[:n]


def export_stream(tflite_path, out_dir, data_dir, split: str = "test", stream: int | None = None,
                  samples: int | None = None, method: str = "viterbi", lag: int = 10,
                  reset_every: int | None = None) -> dict:
    """Write the firmware's stream sources into ``out_dir``; returns the manifest.

    ``reset_every``: the firmware (and the host expectation) resets the state to zero every that
    many samples.
    """
    from tinyloc_tf.deployment.export_c import _array_body, _header, _hexfloat, _write_text, firmware_model, model_sources
    from tinyloc_tf.deployment.host import _check_data_matches, dequantize, model_bytes, quantize
    from tinyloc_tf.deployment.streaming import StreamRunner
    from tinyloc_tf.decoding import METHODS, decode_stream
    from tinyloc_tf.compression.metadata import read_metadata

    if method not in METHODS:
        raise TinylocError(f"unknown online decoder {method!r}; choose one of {', '.join(METHODS)}")
    if lag < 0:
        raise TinylocError(f"--lag must be 0 or more, got {lag}")
    buf = model_bytes(tflite_path)
    runner = StreamRunner(buf)  # refuses a window model by name
    meta = read_metadata(buf)
    crf = meta.get("crf")
    if crf is None:
        raise TinylocError(f"{tflite_path}: metadata has no 'crf' entry (convert with `tinyloc convert --streaming`)")
    dataset, index, X, y = pick_stream(data_dir, split, stream, samples)
    _check_data_matches(meta, dataset)
    transitions = np.asarray(crf["transitions"], np.float32)
    start = np.asarray(crf["start"], np.float32)
    sample_io, emission_io, states = runner.inputs[0], runner.outputs[0], runner.inputs[1:]
    for io in [sample_io, emission_io, *states]:
        if io.dtype not in C_TYPES or not io.quantized:
            raise TinylocError(f"{tflite_path}: the firmware runs int8 or int16 step models; a tensor is {io.dtype}")
    if len({io.dtype for io in states}) > 1:
        raise TinylocError(f"{tflite_path}: the state tensors have different types; the firmware takes one")
    features, classes = int(sample_io.shape[-1]), int(emission_io.shape[-1])
    if transitions.shape != (classes, classes):
        raise TinylocError(f"{tflite_path}: CRF transitions {transitions.shape} for {classes} classes")

    inputs_q = quantize(X, sample_io).reshape(len(X), features)
    emissions_q, _ = runner.run(X, reset_every)
    emissions_q = emissions_q.reshape(len(X), classes)
    host_path = decode_stream(dequantize(emissions_q, emission_io), transitions, start, method, lag)
    state_type = C_TYPES[states[0].dtype] if states else "int8_t"
    state_bytes = [int(np.prod(io.shape)) * io.dtype.itemsize for io in states]
    state_zero = [int(io.zero_point) for io in states]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header = _header("stream_data.h", "\n".join([
        "// Element types of the step model's tensors (the runner moves their bytes).",
        f"using StreamSample = {C_TYPES[sample_io.dtype]};",
        f"using StreamEmission = {C_TYPES[emission_io.dtype]};",
        f"using StreamState = {state_type};",
        "",
        f"constexpr int kStreamSamples = {len(X)};",
        f"constexpr int kStreamFeatures = {features};",
        f"constexpr int kStreamClasses = {classes};",
        f"constexpr int kStateCount = {len(states)};",
        f"constexpr int kStateTotalBytes = {sum(state_bytes)};",
        f"constexpr float kOutputScale = {_hexfloat(emission_io.scale)};",
        f"constexpr int32_t kOutputZeroPoint = {int(emission_io.zero_point)};",
        "// Online decoder: forward filtering (1) or fixed-lag Viterbi with kDecoderLag (0).",
        f"constexpr int kDecoderFilter = {1 if method == 'filter' else 0};",
        f"constexpr int kDecoderLag = {0 if method == 'filter' else int(lag)};",
        "// The state goes back to its zero points before every kResetEvery-th sample (0: never).",
        f"constexpr int kResetEvery = {int(reset_every or 0)};",
        "",
        "extern const int32_t kStateBytes[kStateCount];",
        "extern const StreamState kStateZeroPoint[kStateCount];",
        "extern const float kCrfTransitions[kStreamClasses * kStreamClasses];  // [prev * K + next]",
        "extern const float kCrfStart[kStreamClasses];",
        "",
        "// The recorded stream and what host TFLM and the Python decoder made of it.",
        "extern const StreamSample kStreamInput[kStreamSamples * kStreamFeatures];",
        "extern const StreamEmission kHostEmissions[kStreamSamples * kStreamClasses];",
        "extern const uint8_t kHostPath[kStreamSamples];",
        "",
    ]))
    settings = "\n".join([
        '#include "stream_data.h"', "",
        f"const int32_t kStateBytes[kStateCount] = {{\n{_array_body(state_bytes)}\n}};",
        f"const StreamState kStateZeroPoint[kStateCount] = {{\n{_array_body(state_zero)}\n}};",
        f"const float kCrfTransitions[kStreamClasses * kStreamClasses] = {{\n{_array_body(transitions, _hexfloat, 6)}\n}};",
        f"const float kCrfStart[kStreamClasses] = {{\n{_array_body(start, _hexfloat, 6)}\n}};", "",
    ])
    data = "\n".join([
        '#include "stream_data.h"', "",
        f"const StreamSample kStreamInput[kStreamSamples * kStreamFeatures] = {{\n{_array_body(inputs_q)}\n}};",
        f"const StreamEmission kHostEmissions[kStreamSamples * kStreamClasses] = {{\n{_array_body(emissions_q)}\n}};",
        f"const uint8_t kHostPath[kStreamSamples] = {{\n{_array_body(host_path)}\n}};", "",
    ])
    manifest_path = out / "stream_manifest.json"
    manifest_path.unlink(missing_ok=True)
    manifest = {"model": str(tflite_path), "data": str(data_dir), "split": split, "stream": index,
                "samples": int(len(X)), "decoder": method, "lag": 0 if method == "filter" else int(lag),
                "reset_every": reset_every, "state_bytes": int(sum(state_bytes))}
    sources = dict(zip(STREAM_SOURCES, (header, settings, data)))
    # The state inputs are the step's to overwrite: the firmware writes the next state into them.
    sources.update(model_sources(firmware_model(buf, manifest, overwritable_inputs=range(1, len(runner.inputs)))))
    for name, text in sources.items():
        _write_text(out / name, text)
    np.savez(out / "test_stream.npz", inputs=inputs_q, host_emissions=emissions_q, host_path=host_path,
             labels=np.asarray(y, np.int32))
    manifest["files"] = [*sources, "test_stream.npz"]
    # The manifest goes last: its presence marks a complete export.
    _write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def deploy_streaming(tflite_path, target: str = DEFAULT_TARGET, ram_kb: int = 64, backend: str = "aot", data_dir=None,
                     split: str = "test", stream: int | None = None, samples: int | None = None,
                     method: str = "viterbi", lag: int = 10, out_dir=None, stack_bytes: int | None = None,
                     heap_bytes: int | None = None, progress: bool = True, timeout: float = 600.0,
                     kernels: str | None = None, reset_every: int | None = None, profile: bool = False) -> dict:
    """Export, build and run a step model over one recorded stream on ``target``; the report.

    ``backend``: ``aot`` (the compiled C) or ``tflm`` (TFLM's interpreter with ``kernels``; its
    arena is measured on the target first). Both run int8 and int16x8 step models.
    ``profile`` (TFLM): a second build that times every operator type adds ``op_profile``
    (:func:`~tinyloc_tf.deployment.firmware.op_profile`, per sample) to the report.
    """
    from tinyloc_tf.deployment import firmware as fw

    if backend not in STREAMING_BACKENDS:
        raise TinylocError(f"--streaming runs with --backend {' or '.join(STREAMING_BACKENDS)}, not {backend}")
    if data_dir is None:
        raise TinylocError("--streaming needs --data: the prepared dataset whose stream the firmware replays")
    spec = get_target(target)
    fw.require_tools(target)
    stack_bytes = fw.DEFAULT_STACK_BYTES if stack_bytes is None else int(stack_bytes)
    heap_bytes = fw.DEFAULT_HEAP_BYTES if heap_bytes is None else int(heap_bytes)
    if backend == "tflm":
        kernels = fw.tflm_kernels(target, kernels, model=tflite_path)
    else:
        if kernels is not None:
            raise TinylocError("--kernels picks TFLM's kernels; the aot backend has its own")
        if profile:
            raise TinylocError("--profile times TFLM's kernels; the aot backend has no operators to time")
    steps = ["export", "aot compile" if backend == "aot" else "probe", "build", "run"] + (["profile"] if profile else [])
    step = fw.StepBar(steps, f"deploy --streaming {target}/{backend}", progress)

    with tempfile.TemporaryDirectory(prefix="tinyloc-deploy-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        gen = work / "export"
        try:
            manifest = export_stream(tflite_path, gen, data_dir, split, stream, samples, method, lag, reset_every)
            step("export")
            runner_srcs, runner_cppflags, arena = (), "", 16
            if backend == "aot":
                runner_srcs, runner_cppflags = fw._aot_runner(Path(tflite_path), work / "aot")
            else:
                arena, _ = fw._probe_arena(gen, spec, work / "probe", stack_bytes, heap_bytes, kernels, "release",
                                           harness="streaming")
            step(steps[1])
            firmware = fw.build(gen, target, ram_kb, arena, work / "build", backend, runner_srcs, runner_cppflags,
                                stack_bytes=stack_bytes, heap_bytes=heap_bytes, harness="streaming", kernels=kernels)
            step("build")
            result = fw.run(firmware.elf, target, timeout=timeout)
            summary = fw.check_run(result)
            step("run")
            if profile:
                profiled = fw.build(gen, target, ram_kb, arena, work / "profile", backend, stack_bytes=stack_bytes,
                                    heap_bytes=heap_bytes, harness="streaming", kernels=kernels, profile=True)
                profile_run = fw.run(profiled.elf, target, timeout=timeout)
                fw.check_run(profile_run)
                step("profile")
        finally:
            step.close()
        expected = dict(np.load(gen / "test_stream.npz"))

    n = int(summary["samples"])
    per_sample = sorted((r for r in result.records if "t" in r), key=lambda r: r["t"])
    if [r["t"] for r in per_sample] != list(range(n)) or n != manifest["samples"]:
        raise fw.FirmwareError(f"the firmware reported {len(per_sample)} samples of the {manifest['samples']} exported")
    path = np.full(n, -1, np.int32)
    for r in result.records:
        if "room" in r:
            path[int(r["sample"])] = int(r["room"])
    if (path < 0).any():
        raise fw.FirmwareError(f"the firmware left {int((path < 0).sum())} samples undecided")
    instructions = np.array([r["instructions"] for r in per_sample], np.int64)
    model_instructions = np.array([r["model_instructions"] for r in per_sample], np.int64)
    _, emulator = fw.emulator_command(firmware.elf, target)
    labels = expected["labels"]
    report = {
        "model": str(tflite_path),
        "mode": "streaming",
        "target": target,
        "board": spec.board if emulator in ("qemu", "renode") else emulator,
        "backend": backend,
        "kernels": kernels,
        "ram_kb": int(ram_kb),
        "stream": {k: manifest[k] for k in ("data", "split", "stream", "samples")},
        "decoder": manifest["decoder"],
        "lag": manifest["lag"],
        "reset_every": manifest["reset_every"],
        "emissions_bit_exact": summary["emission_values_equal"] == summary["emission_values"],
        "emission_agreement": summary["emission_values_equal"] / max(summary["emission_values"], 1),
        "emission_max_abs_diff": summary["emission_max_abs_diff"],
        # Decisions of the C decoder on the device against the Python decoder on host TFLM's emissions.
        "path_agreement": float(np.mean(path == expected["host_path"])),
        "path_agreement_firmware_count": summary["path_equal"] / max(summary["decisions"], 1),
        **fw._scores(labels, path),
        # TFLM: the smallest arena AllocateTensors accepts (what the build reserved); AOT: its plan.
        "arena_bytes": arena if backend == "tflm" else int(summary["arena_used_bytes"]),
        "state_bytes": int(summary["state_bytes"]),
        **firmware.sizes,
        "flash_breakdown": firmware.flash_breakdown,
        "stack_used_bytes": summary["stack_used_bytes"],
        "heap_used_bytes": summary["heap_used_bytes"],
        # Per sample: model invoke + state copy + dequantization + one decoder step.
        "instructions_per_sample": {"min": int(instructions.min()), "median": float(np.median(instructions)),
                                    "max": int(instructions.max()), "mean": float(instructions.mean())},
        "model_instructions_per_sample": {"min": int(model_instructions.min()),
                                          "median": float(np.median(model_instructions)),
                                          "max": int(model_instructions.max())},
        "init_instructions": summary["init_instructions"],
        "instructions_exact": emulator in ("qemu", "renode"),
        "emulator": emulator,
    }
    if profile:
        report["op_profile"] = fw.op_profile(profile_run.records, n, "model_instructions_total")
    if summary["heap_used_bytes"] > summary["heap_bytes"]:
        raise fw.FirmwareError(f"the firmware used {summary['heap_used_bytes']} bytes of heap, more than the "
                               f"{summary['heap_bytes']} reserved (it grew into the stack); raise the heap reserve")
    if summary["stack_used_bytes"] >= summary["stack_bytes"]:
        raise fw.FirmwareError(f"the stack ({summary['stack_bytes']} bytes) was used to its end; raise --stack-bytes")
    return report
