"""The Cortex-M firmware (tflm_app/) and `tinyloc deploy`.

Without a TFLM tree (CI) this still tests the C++ Viterbi against numpy and brute force, the
link-time RAM budget, a QEMU boot of the harness on both QEMU boards with a runner that needs
no model, the flash breakdown from the map file, and how firmware failures reach the host.
Tests that run TFLM itself skip unless TFLM_ROOT points at a TensorFlow Lite Micro tree
(scripts/get_tflm.sh makes one), per kernel set whose library is built; tests on the stm32l4
board skip unless Renode is there (scripts/get_renode.sh).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.compression.flatbuffer import read_model
from tinyloc_tf.deployment import firmware as fw
from tinyloc_tf.deployment.export_c import HarnessData, ModelInfo, export_c, firmware_model, host_paths, write_sources
from tinyloc_tf.deployment.targets import PROBE_ARENA_BYTES
from tinyloc_tf.errors import TinylocError

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tflm_app"
ECHO_RUNNER = APP / "tests" / "echo_runner.cc"

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="host g++ not installed")
needs_arm = pytest.mark.skipif(
    bool(fw.missing_tools()),
    reason=f"Cortex-M toolchain / QEMU missing ({', '.join(fw.missing_tools())}); see scripts/setup.sh",
)


def _tflm_root():
    try:
        return fw.tflm_root(required=False)
    except TinylocError:
        return None


needs_tflm = pytest.mark.skipif(
    _tflm_root() is None or bool(fw.missing_tools()) or not any(
        fw.tflm_library(_tflm_root(), fw.get_target("m4"), k, "release").is_file() for k in fw.KERNELS),
    reason="TFLM_ROOT is not set to a TensorFlow Lite Micro tree with an M4 library (scripts/get_tflm.sh fetches "
    "and builds one); TFLM firmware tests skipped",
)
QEMU_TARGETS = ("m55", "m4")
needs_renode = pytest.mark.skipif(
    bool(fw.missing_tools("stm32l4")),
    reason="Renode is missing (scripts/get_renode.sh builds it; set TINYLOC_RENODE): stm32l4 firmware tests skipped",
)


def _library_missing(kernels: str, target: str = "m4", build: str = "release") -> str | None:
    root = _tflm_root()
    if root is None:
        return "TFLM_ROOT is not set"
    library = fw.tflm_library(root, fw.get_target(target), kernels, build)
    flag = " --debug" if build == "debug" else ""
    return None if library.is_file() else f"no {kernels} {build} library for {target} ({library}; scripts/get_tflm.sh{flag})"


def kernel_sets(target: str = "m4"):
    """pytest params over both kernel sets, each skipping when get_tflm.sh has not built its library."""
    return [pytest.param(k, marks=pytest.mark.skipif(bool(_library_missing(k, target)),
                                                     reason=_library_missing(k, target) or ""))
            for k in fw.KERNELS]


def target_kernel_sets(targets=("m55", "m4")):
    """(target, kernels) params, each skipping when its library is not built (a build takes hours here)."""
    return [pytest.param(t, k, marks=pytest.mark.skipif(bool(_library_missing(k, t)), reason=_library_missing(k, t) or ""))
            for t in targets for k in fw.KERNELS]


# --------------------------------------------------------------------------- C++ Viterbi


@pytest.fixture(scope="module")
def viterbi_exe(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("viterbi") / "viterbi_host"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Werror", f"-I{APP / 'src'}", str(APP / "src" / "viterbi.cc"),
         str(APP / "tests" / "viterbi_host.cc"), "-o", str(exe)],
        check=True,
    )
    return exe


def _hex(values) -> str:
    return " ".join(float(v).hex() for v in np.asarray(values, dtype=np.float32).reshape(-1))


def cpp_viterbi(exe, emissions, transitions, start, end, quant: tuple[float, int] | None = None) -> np.ndarray:
    b, t, k = emissions.shape
    head = f"{b} {t} {k}" + (f" {float(np.float32(quant[0])).hex()} {quant[1]}" if quant else "")
    body = " ".join(str(int(v)) for v in emissions.reshape(-1)) if quant else _hex(emissions)
    text = f"{head}\n{_hex(transitions)} {_hex(start)} {_hex(end)}\n{body}\n"
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
    return np.array([[int(c) for c in line.split()] for line in out.splitlines()], dtype=np.int32).reshape(b, t)


def brute_force(emissions, transitions, start, end) -> np.ndarray:
    """Best path by scoring every one of the K^T paths (float64)."""
    t, k = emissions.shape
    best, best_path = -np.inf, None
    for path in itertools.product(range(k), repeat=t):
        score = start[path[0]] + end[path[-1]] + sum(emissions[i, c] for i, c in enumerate(path))
        score += sum(transitions[a, b] for a, b in zip(path, path[1:]))
        if score > best:
            best, best_path = score, path
    return np.array(best_path, dtype=np.int32)


@needs_gxx
def test_cpp_viterbi_matches_brute_force(viterbi_exe):
    rng = np.random.default_rng(0)
    for steps, k in [(1, 4), (2, 3), (4, 3), (5, 4), (3, 6)]:
        em = rng.normal(size=(6, steps, k)).astype(np.float32)
        tr, st, en = (rng.normal(size=s).astype(np.float32) for s in ((k, k), (k,), (k,)))
        got = cpp_viterbi(viterbi_exe, em, tr, st, en)
        for b in range(len(em)):
            np.testing.assert_array_equal(got[b], brute_force(em[b], tr, st, en), err_msg=f"T={steps} K={k} b={b}")


@needs_gxx
def test_cpp_viterbi_matches_numpy_on_dequantized_int8(viterbi_exe):
    """Coarse int8 emissions and rounded CRF weights make ties: the tie-break must match too."""
    from tinyloc_tf.decoding import viterbi_decode

    rng = np.random.default_rng(1)
    for steps, k, scale, zp in [(20, 5, 0.25, 3), (1, 59, 0.1, -20), (8, 13, 0.5, 0), (20, 3, 0.03125, -128)]:
        q = rng.integers(-128, 128, size=(40, steps, k)).astype(np.int8)
        tr = rng.integers(-4, 5, size=(k, k)).astype(np.float32) / 2
        st, en = (rng.integers(-2, 3, size=k).astype(np.float32) for _ in range(2))
        got = cpp_viterbi(viterbi_exe, q, tr, st, en, quant=(scale, zp))
        deq = (q.astype(np.int32) - zp).astype(np.float32) * np.float32(scale)
        np.testing.assert_array_equal(got, viterbi_decode(deq, tr, st, en), err_msg=f"T={steps} K={k}")


# --------------------------------------------------------------------------- harness on QEMU


def echo_sources(out: Path, steps=5, features=4, classes=3, windows=6, seed=1) -> dict:
    """Generated sources for the echo runner: its emissions are the input, echoed (k % F)."""
    rng = np.random.default_rng(seed)
    info = ModelInfo(steps=steps, features=features, classes=classes, input_scale=1 / 255, input_zero_point=-128,
                     output_scale=0.1, output_zero_point=3, ops=[], schema_version=3, model_bytes=0)
    inputs = rng.integers(-128, 128, (windows, steps, features)).astype(np.int8)
    emissions = np.stack([inputs[:, :, k % features] for k in range(classes)], axis=-1)
    crf = {name: rng.normal(size=shape).astype(np.float32)
           for name, shape in (("transitions", (classes, classes)), ("start", (classes,)), ("end", (classes,)))}
    paths = host_paths(emissions, info, crf)
    labels = rng.integers(0, classes, (windows, steps)).astype(np.int32)
    data = HarnessData(**crf, class_names=[f"room{i}" for i in range(classes)],
                       feature_min=np.zeros(features, np.float32), feature_max=np.ones(features, np.float32),
                       inputs=inputs, host_emissions=emissions, host_path=paths, labels=labels)
    write_sources(out, b"\0" * 16, info, data)
    return {"paths": paths, "labels": labels}


@pytest.fixture(scope="module")
def echo_gen(tmp_path_factory):
    out = tmp_path_factory.mktemp("echo_gen")
    return out, echo_sources(out)


def build_echo(gen, target, build_dir, ram_kb=32, arena_bytes=1024, cppflags=""):
    return fw.build(gen, target, ram_kb, arena_bytes, build_dir, runner="echo", runner_srcs=[ECHO_RUNNER],
                    runner_cppflags=cppflags)


def _harness_boots(target, echo_gen, tmp_path):
    gen, expected = echo_gen
    firmware = build_echo(gen, target, tmp_path / "build")
    result = fw.run(firmware.elf, target, timeout=300)
    assert result.status == 0, result.log
    summary = fw.check_run(result)
    assert summary["target"] == target and summary["backend"] == "echo"
    assert summary["emission_values_equal"] == summary["emission_values"] == 6 * 5 * 3
    paths = np.array([w["path"] for w in result.windows])
    np.testing.assert_array_equal(paths, expected["paths"])
    assert summary["path_steps_equal"] == 30
    assert summary["correct_steps"] == int((expected["paths"] == expected["labels"]).sum())
    assert 0 < summary["stack_used_bytes"] < summary["stack_bytes"] == fw.DEFAULT_STACK_BYTES
    assert summary["heap_used_bytes"] <= summary["heap_bytes"]
    assert summary["instructions_max"] > 0 and summary["sysclk_hz"] == fw.get_target(target).sysclk_hz
    sizes = firmware.sizes
    assert sizes["ram_bytes"] <= 32 * 1024
    assert sizes["ram_bytes"] >= 1024 + fw.DEFAULT_STACK_BYTES + fw.DEFAULT_HEAP_BYTES
    assert sizes["test_data_bytes"] == 6 * (5 * 4 + 5 * 3) + 2 * 6 * 5 * 2
    assert sizes["model_bytes"] == 0  # the echo runner links no model
    return result


@needs_arm
@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_harness_boots_and_reports_on_qemu(target, echo_gen, tmp_path):
    _harness_boots(target, echo_gen, tmp_path)


@needs_renode
def test_harness_boots_and_reports_on_renode_stm32l4(echo_gen, tmp_path):
    result = _harness_boots("stm32l4", echo_gen, tmp_path)
    assert result.records[-1] == {"event": "exit", "status": 0}  # the UART exit line
    # Renode's own count covers the whole run, so it bounds the measured windows from above.
    assert result.executed_instructions > fw.check_run(result)["instructions_total"] > 0


@needs_arm
def test_flash_breakdown_from_the_map_file_adds_up(echo_gen, tmp_path):
    gen, _ = echo_gen
    firmware = build_echo(gen, "m4", tmp_path / "build")
    parts = firmware.flash_breakdown
    assert set(parts) == set(fw.FLASH_PARTS)
    image = firmware.sizes["flash_bytes"] + firmware.sizes["test_data_bytes"]
    # Everything in flash is attributed; only alignment padding ("other") is left over.
    assert 0 <= sum(parts.values()) - image <= 64 and parts["other"] <= 64
    assert parts["test_data"] == firmware.sizes["test_data_bytes"]
    assert parts["app"] > 1000 and parts["libc"] > 1000
    assert parts["tflm"] == parts["cmsis_nn"] == parts["model"] == 0  # the echo runner links neither


def test_flash_breakdown_attributes_archive_members(tmp_path):
    lib = "/t/gen/cortex_m_generic_cortex-m4+fp_release_cmsis_nn_gcc/lib/libtensorflow-microlite.a"
    (tmp_path / "firmware.map").write_text(
        "Discarded input sections\n .text.x 0x0 0x999 /b/obj/main.o\n\n"
        "Linker script and memory map\n\n"
        ".text           0x00000000     0x1000\n"
        " *(.vectors)\n"
        " .vectors       0x00000000       0x40 /b/obj/startup.o\n"
        " .text._ZN6tflite14MicroAllocator6CreateEPhj\n"
        f"                0x00000040      0x100 {lib}(micro_allocator.o)\n"
        "                0x00000040                tflite::MicroAllocator::Create(unsigned char*, unsigned int)\n"
        f" .text.arm_fully_connected_s8\n                0x00000140       0x80 {lib}(arm_fully_connected_s8.o)\n"
        " .rodata.g_tinyloc_model\n                0x000001c0      0x200 /b/obj/model_data.o\n"
        " .rodata.kTestInput\n                0x000003c0       0x20 /b/obj/test_windows.o\n"
        " .text.memcpy   0x000003e0       0x10 /usr/lib/arm-none-eabi/newlib/thumb/libc_nano.a(libc_a-memcpy.o)\n"
        " *fill*         0x000003f0        0x4 \n"
        ".bss            0x20000000     0x4000\n"
        " .bss.tensor_arena\n                0x20000000     0x3000 /b/obj/tflm_runner.o\n"
    )
    assert fw.flash_breakdown(tmp_path / "firmware.map") == {
        "tflm": 0x100, "cmsis_nn": 0x80, "app": 0x40, "model": 0x200, "test_data": 0x20, "libc": 0x10, "other": 4}


@needs_arm
def test_link_fails_when_the_arena_exceeds_the_ram_budget(echo_gen, tmp_path):
    gen, _ = echo_gen
    fits = build_echo(gen, "m4", tmp_path / "fits", ram_kb=32, arena_bytes=1024)
    big = 40 * 1024
    with pytest.raises(fw.RamBudgetError) as err:
        build_echo(gen, "m4", tmp_path / "big", ram_kb=32, arena_bytes=big)
    needed = fits.sizes["ram_bytes"] + (big - 1024)
    assert err.value.overflow == needed - 32 * 1024
    message = str(err.value)
    assert f"needs {needed} bytes of RAM" in message and "more than --ram-kb 32" in message
    assert f"tensor arena {big} B" in message
    assert f"smallest budget that links is --ram-kb {-(-needed // 1024)}" in message


@needs_arm
def test_firmware_failure_status_reaches_the_host(echo_gen, tmp_path):
    gen, _ = echo_gen
    firmware = build_echo(gen, "m55", tmp_path / "fail", cppflags="-DECHO_INIT_STATUS=13")
    result = fw.run(firmware.elf, "m55", timeout=120)
    assert result.status == 13
    assert result.error == {"error": "input_shape_mismatch", "status": 13,
                            "message": "echo runner built to fail with status 13"}
    with pytest.raises(fw.FirmwareError, match="status 13 \\(input_shape_mismatch\\)") as err:
        fw.check_run(result)
    assert err.value.name == "input_shape_mismatch"


def test_target_files_are_read():
    m55, m4, l4 = fw.get_target("m55"), fw.get_target("m4"), fw.get_target("stm32l4")
    assert (m55.qemu_machine, m55.tflm_arch, m55.sysclk_hz) == ("mps3-an547", "cortex-m55", 32_000_000)
    assert (m4.qemu_machine, m4.tflm_arch, m4.sysclk_hz) == ("mps2-an386", "cortex-m4+fp", 25_000_000)
    # STM32L432KC (datasheet DS11451): M4F at 80 MHz, 64 KB SRAM; the probe arena fits in it.
    assert (l4.emulator, l4.tflm_arch, l4.sysclk_hz, l4.ram_max_bytes) == ("renode", "cortex-m4+fp", 80_000_000, 65536)
    assert 32 * 1024 < l4.probe_arena_bytes < l4.ram_max_bytes and m4.probe_arena_bytes == PROBE_ARENA_BYTES
    with pytest.raises(TinylocError, match="unknown target 'm7'"):
        fw.get_target("m7")


def test_emulator_command_defaults_to_qemu_with_icount(monkeypatch):
    monkeypatch.delenv("TINYLOC_EMULATOR", raising=False)
    monkeypatch.delenv("TINYLOC_FVP", raising=False)
    command, name = fw.emulator_command("/x/firmware.elf", "m4")
    assert name == "qemu" and command[:3] == ["qemu-system-arm", "-M", "mps2-an386"]
    assert "shift=0,align=off,sleep=off" in command
    command, name = fw.emulator_command("/x/firmware.elf", "stm32l4")
    assert name == "renode" and command == [str(fw.APP_DIR / "targets/stm32l4/run_renode.sh"), "/x/firmware.elf"]
    monkeypatch.setenv("TINYLOC_FVP", "/opt/fvp/FVP_Corstone_SSE-300")
    command, name = fw.emulator_command("/x/firmware.elf", "m55")
    assert name == "fvp" and command[0] == "/opt/fvp/FVP_Corstone_SSE-300" and command[-2:] == ["-a", "/x/firmware.elf"]
    monkeypatch.setenv("TINYLOC_EMULATOR", "renode-run --board {target} {elf}")
    assert fw.emulator_command("/x/f.elf", "m4") == (["renode-run", "--board", "m4", "/x/f.elf"], "custom")


def test_deploy_without_tflm_root_explains(monkeypatch, tmp_path, capsys):
    from tinyloc_tf.cli import main

    monkeypatch.delenv("TFLM_ROOT", raising=False)
    with pytest.raises(TinylocError, match="TFLM_ROOT is not set"):
        fw.tflm_root()
    assert main(["deploy", str(REPO / "models" / "synth-house-a" / "32kb.tflite"), "--target", "m4"]) == 2
    assert "TFLM_ROOT is not set" in capsys.readouterr().err
    # A missing model is named first: no TFLM tree would make it run.
    assert main(["deploy", str(tmp_path / "m.tflite"), "--target", "m4"]) == 2
    err = capsys.readouterr().err
    assert "m.tflite: no such .tflite file" in err and "TFLM_ROOT" not in err
    monkeypatch.setenv("TFLM_ROOT", str(tmp_path))
    with pytest.raises(TinylocError, match="is not a TensorFlow Lite Micro tree"):
        fw.tflm_root()


def test_aot_backend_absent_is_a_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "tinyloc_tf.deployment.aot", None)  # import fails
    with pytest.raises(TinylocError, match="--backend aot needs tinyloc_tf.deployment.aot.compile_tflite"):
        fw._aot_runner(tmp_path / "m.tflite", tmp_path / "aot")


# --------------------------------------------------------------------------- with TFLM


@pytest.fixture(scope="module")
def fc_model(tmp_path_factory):
    from helpers import fc_model_bytes

    path = tmp_path_factory.mktemp("fc") / "fc.tflite"
    path.write_bytes(fc_model_bytes())
    return path


def _check_deploy_report(report, model, ram_kb=32):
    assert report["path_agreement"] == 1.0
    assert report["macro_f1"] is None  # random windows carry no labels
    assert 0 < report["arena_in_use_bytes"] <= report["arena_bytes"] < report["ram_bytes"] <= ram_kb * 1024
    # The firmware's copy of the model: no tinyloc metadata, compact quantization, and its arena
    # plan (4 bytes per tensor).
    embedded = firmware_model(model.read_bytes(), {})
    assert report["model_bytes"] == len(embedded) < model.stat().st_size
    assert "OfflineMemoryAllocation" in read_model(embedded).metadata()
    assert report["flash_bytes"] == report["model_bytes"] + report["code_bytes"]
    assert report["instructions_per_inference"] > 0 and report["instructions_exact"]
    parts = report["flash_breakdown"]
    assert parts["model"] == report["model_bytes"] and parts["tflm"] > 10_000
    assert (parts["cmsis_nn"] > 0) == (report["kernels"] == "cmsis-nn")


@needs_tflm
@pytest.mark.slow
@pytest.mark.parametrize("target,kernels", target_kernel_sets())
def test_deploy_tflm_is_bit_exact_with_host_tflm(target, kernels, fc_model, tmp_path):
    report = fw.deploy(fc_model, target=target, ram_kb=32, windows=6, out_dir=tmp_path, progress=False,
                       kernels=kernels)
    assert report["kernels"] == kernels and report["build"] == "release"
    # CMSIS-NN's int8 fully connected kernel is bit-exact with TFLM's reference one.
    assert report["emissions_bit_exact"] and report["emission_agreement"] == 1.0
    _check_deploy_report(report, fc_model)


@needs_tflm
@pytest.mark.slow
@pytest.mark.parametrize("kernels", kernel_sets())
def test_deploy_profile_times_every_operator_type(kernels, fc_model, tmp_path):
    report = fw.deploy(fc_model, target="m4", ram_kb=32, windows=4, out_dir=tmp_path, progress=False,
                       kernels=kernels, profile=True)
    profile = report["op_profile"]
    assert [r["op"] for r in profile["ops"]] == ["FULLY_CONNECTED"] and profile["ops"][0]["calls"] == 1
    fc = profile["ops"][0]["instructions"]
    assert 0 < fc < profile["instructions_per_inference"]
    assert fc + profile["outside_kernels"] == pytest.approx(profile["instructions_per_inference"])
    # The report's own counts come from the build without timer reads: no more than the profiled one.
    assert 0 < report["instructions_per_inference"] <= profile["instructions_per_inference"]


@pytest.fixture(scope="module")
def mamba_t1_model(tmp_path_factory) -> Path:
    """An int8 Mamba H16L1 on one-scan inputs (T = 1, as UJIIndoorLoc's): int8 LOGISTIC nodes, and
    every fully connected layer reads one row. Untrained: the firmware checks need its graph, not
    its accuracy."""
    import keras

    from tinyloc_tf.compression.convert import convert_model
    from tinyloc_tf.models import build_model

    keras.utils.set_random_seed(0)
    tagger = build_model("mamba", features=8, classes=4, hidden=16, layers=1, steps=1, int8_friendly=True)
    x = np.random.default_rng(0).random((64, 1, 8)).astype(np.float32)
    path = tmp_path_factory.mktemp("mamba_t1") / "mamba_t1.tflite"
    path.write_bytes(convert_model(tagger, quant="int8", representative=x))
    return path


@needs_tflm
@pytest.mark.slow
@pytest.mark.parametrize("kernels", kernel_sets())
def test_optimized_firmware_is_bit_exact_and_drops_the_slow_paths(kernels, mamba_t1_model, tmp_path):
    """A Mamba with int8 LOGISTIC nodes and single-row fully connected layers: with --optimize
    the firmware's emissions still equal the host TFLM's on the original model, every such
    layer was made 2-D and LOGISTIC drops to a load per element."""
    report = fw.deploy(mamba_t1_model, target="m4", ram_kb=32, windows=2, out_dir=tmp_path, progress=False,
                       kernels=kernels, optimize=True, profile=True)
    from tinyloc_tf.compression.flatbuffer import read_model

    fb = read_model(mamba_t1_model)
    fully_connected = sum(1 for op in fb.operators if fb.op_name(op) == "FULLY_CONNECTED")
    assert fully_connected >= 7 and fb.tensors[fb.inputs[0]].shape[1] == 1  # T = 1: every FC reads one row
    assert report["optimized"] and report["emissions_bit_exact"] and report["path_agreement"] == 1.0
    assert report["graph_rewrites"] == {"single_row_fully_connected_2d": fully_connected}
    from tinyloc_tf.deployment.graph_rewrite import single_row_fully_connected_2d

    rewritten, _ = single_row_fully_connected_2d(mamba_t1_model.read_bytes())
    assert report["model_bytes"] == len(firmware_model(rewritten, {}))  # the rewritten graph is what the device runs
    ops = {r["op"]: r for r in report["op_profile"]["ops"]}
    assert ops["LOGISTIC"]["share"] < 0.02  # 22-28 % with TFLM's kernel
    assert ops["RESHAPE"]["calls"] >= fully_connected


@pytest.mark.parametrize("flag, message", [("profile", "aot backend has no operators"),
                                           ("optimize", "aot backend has its own")])
def test_tflm_only_options_are_refused_for_the_aot_backend(flag, message, fc_model, tmp_path, monkeypatch):
    monkeypatch.setattr(fw, "require_tools", lambda *a, **k: None)
    with pytest.raises(TinylocError, match=message):
        fw.deploy(fc_model, target="m4", backend="aot", out_dir=tmp_path, progress=False, **{flag: True})


@needs_tflm
@needs_renode
@pytest.mark.slow
@pytest.mark.parametrize("backend", fw.BACKENDS)
def test_deploy_on_renode_stm32l4_is_bit_exact_with_host_tflm(backend, fc_model, tmp_path):
    report = fw.deploy(fc_model, target="stm32l4", ram_kb=32, windows=6, out_dir=tmp_path, progress=False,
                       backend=backend)
    assert report["emulator"] == "renode" and report["emissions_bit_exact"] and report["path_agreement"] == 1.0
    assert report["executed_instructions"] > 6 * report["instructions_per_inference"] > 0


@needs_tflm
@pytest.mark.skipif(bool(_library_missing("cmsis-nn")), reason=_library_missing("cmsis-nn") or "")
@pytest.mark.slow
def test_deploy_too_small_ram_fails_to_link_with_the_size_needed(fc_model, tmp_path, capsys):
    from tinyloc_tf.cli import main

    code = main(["deploy", str(fc_model), "--target", "m4", "--ram-kb", "4", "--windows", "2",
                 "--build-dir", str(tmp_path)])
    assert code == 3
    err = capsys.readouterr().err
    assert "does not fit" in err and "more than --ram-kb 4" in err and "smallest budget that links is --ram-kb" in err


def _short_arena_message(size: int) -> str:
    return f"tensor arena of {size} bytes is too small for this model (`tinyloc deploy` measures the size it needs)"


@needs_tflm
@pytest.mark.skipif(bool(_library_missing("cmsis-nn")), reason=_library_missing("cmsis-nn") or "")
@pytest.mark.slow
def test_too_small_arena_fails_with_the_size_needed(fc_model, tmp_path):
    with pytest.raises(fw.FirmwareError) as err:
        fw.deploy(fc_model, target="m4", ram_kb=32, windows=2, arena_bytes=64, out_dir=tmp_path, progress=False)
    assert err.value.status == 10 and err.value.name == "arena_too_small"
    needed = err.value.needed
    assert needed > 64 and f"this model needs a {needed}-byte arena on this target" in str(err.value)
    assert _short_arena_message(64) in str(err.value)
    exact = fw.build(tmp_path / "export", "m4", 32, needed, tmp_path / "exact", runner="tflm")
    assert fw.check_run(fw.run(exact.elf, "m4", timeout=120))["windows"] == 2


@needs_tflm
@pytest.mark.slow
@pytest.mark.parametrize("kernels", kernel_sets())
def test_every_too_small_arena_ends_in_status_10_at_once(kernels, tmp_path):
    """From a few bytes to one byte short of the need, on a shipped model: one status, no hang."""
    model = REPO / "models" / "ujiindoorloc" / "32kb.tflite"
    gen = tmp_path / "export"
    export_c(model, gen, windows=1)
    needed, _ = fw._probe_arena(gen, fw.get_target("m4"), tmp_path / "probe", fw.DEFAULT_STACK_BYTES,
                                fw.DEFAULT_HEAP_BYTES, kernels, "release")
    sizes = sorted({8, 64, 256, 1024, needed // 4, needed // 2, 3 * needed // 4, needed - 256, needed - 64,
                    needed - 8, needed - 1})
    for size in sizes:  # one build folder: only the runner recompiles
        firmware = fw.build(gen, "m4", 64, size, tmp_path / "sweep", runner="tflm", kernels=kernels)
        start = time.monotonic()
        result = fw.run(firmware.elf, "m4", timeout=60)
        assert time.monotonic() - start < 20, size
        assert (result.status, result.error) == (
            10, {"error": "arena_too_small", "status": 10, "message": _short_arena_message(size)}), (size, result.log)
        with pytest.raises(fw.FirmwareError, match=f"needs a {needed}-byte arena") as err:
            fw.check_run(result, arena_needed=needed)
        assert err.value.needed == needed
    firmware = fw.build(gen, "m4", 64, needed, tmp_path / "sweep", runner="tflm", kernels=kernels)
    assert fw.check_run(fw.run(firmware.elf, "m4", timeout=60))["windows"] == 1


def _tflm_build_and_run(gen, tmp_path, target="m4"):
    firmware = fw.build(gen, target, 32, 8192, tmp_path / f"build-{target}", runner="tflm")
    return fw.run(firmware.elf, target, timeout=120)


@needs_tflm
@pytest.mark.slow
def test_unsupported_op_stops_with_its_name(fc_model, tmp_path):
    gen = tmp_path / "gen"
    export_c(fc_model, gen, windows=1)
    ops = gen / "model_ops.h"
    ops.write_text("\n".join(line for line in ops.read_text().splitlines() if "AddFullyConnected" not in line))
    result = _tflm_build_and_run(gen, tmp_path)
    assert result.status == 12 and result.error["error"] == "unsupported_op"
    assert "FULLY_CONNECTED" in result.error["message"]


@pytest.mark.skipif(bool(_library_missing("reference", build="debug")),
                    reason=_library_missing("reference", build="debug") or "")
@pytest.mark.slow
def test_debug_build_runs_the_model_and_carries_tflm_log(fc_model, tmp_path):
    """`deploy --debug` links TFLM's debug library: the same emissions as the release build,
    plus TFLM's error log (its messages are compiled out of the release library)."""
    message = b"failed to prepare with status"  # TFLM's log line when a kernel refuses a model
    report = fw.deploy(fc_model, target="m4", ram_kb=32, windows=2, out_dir=tmp_path / "deploy", progress=False,
                       kernels="reference", build_type="debug")
    assert report["build"] == "debug" and report["emissions_bit_exact"] and report["path_agreement"] == 1.0
    gen = tmp_path / "gen"
    export_c(fc_model, gen, windows=1)
    elves = {build: fw.build(gen, "m4", 32, 8192, tmp_path / build, runner="tflm", kernels="reference",
                             build_type=build).elf for build in fw.BUILDS}
    assert message in Path(elves["debug"]).read_bytes()
    assert message not in Path(elves["release"]).read_bytes()
    assert fw.check_run(fw.run(elves["debug"], "m4", timeout=120))["windows"] == 1


@needs_tflm
@pytest.mark.slow
def test_schema_version_mismatch_stops(tmp_path):
    from helpers import fc_model_bytes

    model = tmp_path / "v2.tflite"
    model.write_bytes(fc_model_bytes(version=2))
    gen = tmp_path / "gen"
    export_c(model, gen, windows=1)
    result = _tflm_build_and_run(gen, tmp_path)
    assert result.status == 11 and result.error["error"] == "schema_version_mismatch"
    assert "schema version 2" in result.error["message"]


@needs_tflm
@pytest.mark.slow
def test_input_shape_mismatch_stops(fc_model, tmp_path):
    from helpers import fc_model_bytes

    wide = tmp_path / "wide.tflite"
    wide.write_bytes(fc_model_bytes(features=7))
    gen = tmp_path / "gen"
    export_c(wide, gen, windows=1)
    export_c(fc_model, tmp_path / "other", windows=1)
    shutil.copy(tmp_path / "other" / "model_data.cc", gen / "model_data.cc")  # a 6-feature model in a 7-feature harness
    result = _tflm_build_and_run(gen, tmp_path)
    assert result.status == 13 and result.error["error"] == "input_shape_mismatch"
    assert "[1, 4, 6]" in result.error["message"] and "[1, 4, 7]" in result.error["message"]


@needs_tflm
def test_generated_op_registration_matches_tflm_api(fc_model):
    """Every name resolver_method() can produce for our graphs' ops exists in TFLM's resolver."""
    from tinyloc_tf.deployment.export_c import resolver_method

    header = (_tflm_root() / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    ops = ["ADD", "SUB", "MUL", "FULLY_CONNECTED", "BATCH_MATMUL", "DEPTHWISE_CONV_2D", "CONV_2D", "LOGISTIC",
           "TANH", "SOFTMAX", "MEAN", "SUM", "RSQRT", "RESHAPE", "PACK", "UNPACK", "SPLIT", "SPLIT_V", "PAD",
           "CONCATENATION", "STRIDED_SLICE", "TRANSPOSE", "MINIMUM", "RELU", "QUANTIZE", "DEQUANTIZE", "GATHER", "SQUARED_DIFFERENCE"]
    missing = [op for op in ops if f"TfLiteStatus {resolver_method(op)}(" not in header]
    assert not missing


@needs_tflm
def test_int8_only_registrations_exist_in_their_tflm_headers():
    from tinyloc_tf.deployment.export_c import INT8_REGISTRATIONS

    kernels = _tflm_root() / "tensorflow/lite/micro/kernels"
    missing = [op for op, header in INT8_REGISTRATIONS.items()
               if f"TFLMRegistration Register_{op}_INT8();" not in (kernels / header).read_text()]
    assert not missing
