"""``tinyloc data ...`` verbs and the verified download (file:// URLs stand in for the web)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import types
import urllib.error
import zipfile
from pathlib import Path

import pytest

import tinyloc_tf.data
from tinyloc_tf.cli import build_parser, main
from tinyloc_tf.data import load_prepared, uji
from tinyloc_tf.data.download import download, extract_zip
from tinyloc_tf.errors import DataError, TinylocError
from helpers import small_tables, write_folder


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


@pytest.fixture
def small_source(tmp_path):
    train, test = small_tables()
    return write_folder(tmp_path / "raw", train, test)


def test_help_lists_data_verbs(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["data", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for verb in ("fetch", "prepare", "synth", "info"):
        assert verb in out


def test_prepare_uji_then_info(small_source, tmp_path, capsys):
    out = tmp_path / "prepared"
    rc = main(["data", "prepare", "uji", "--source", str(small_source), "--out", str(out),
               "--labels", "area", "--areas", "4", "--seed", "5"])
    assert rc == 0
    assert "train 48, val 16, test 8; T=1, F=520, 4 classes (area)" in capsys.readouterr().out
    assert load_prepared(out).meta["split"]["seed"] == 5

    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "T = 1, F = 520, classes = 4" in text
    assert "labels area" in text
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    assert lines["samples"] == ["48", "16", "8"]
    assert lines["B0F0-A00"] == ["12", "4", "2"]

    assert main(["data", "info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == {"train": 48, "val": 16, "test": 8}
    assert summary["classes"]["B0F1-A01"] == {"train": 12, "val": 4, "test": 2}
    assert summary["source_sha256"] == load_prepared(out).meta["source_sha256"]


def test_prepare_errors_are_one_line(tmp_path, capsys):
    rc = main(["data", "prepare", "uji", "--source", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("tinyloc data: error:") and "missing.zip: not found" in err
    assert not (tmp_path / "o").exists()
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "meta.json: not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- download


def test_download_verifies_then_renames(tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"x" * 300_000)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    dest = tmp_path / "dl" / "file.bin"
    path = download([payload.as_uri()], dest, sha256=digest, progress=False)
    assert path == dest and dest.read_bytes() == payload.read_bytes()
    assert not dest.with_name("file.bin.part").exists()

    wrong = tmp_path / "dl" / "wrong.bin"
    with pytest.raises(DataError, match=r"sha256 .* does not match the expected 0000"):
        download([payload.as_uri()], wrong, sha256="0" * 64, progress=False)
    assert list((tmp_path / "dl").iterdir()) == [dest]  # nothing left under either name


def test_download_tries_mirrors_and_keeps_verified_file(tmp_path, monkeypatch):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"abc")
    digest = hashlib.sha256(b"abc").hexdigest()
    dest = tmp_path / "file.bin"
    download([(tmp_path / "absent").as_uri(), payload.as_uri()], dest, sha256=digest, progress=False)
    assert dest.read_bytes() == b"abc"
    # Present and valid: no network needed.
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    assert download(["https://example.invalid/x"], dest, sha256=digest, progress=False) == dest


def test_download_offline_names_destination(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    with pytest.raises(TinylocError, match=r"could not download f\.bin .*place it at .*f\.bin\. hint"):
        download(["https://example.invalid/f.bin"], tmp_path / "f.bin", manual_hint="hint", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_extract_zip_is_whole_or_nothing(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("house_A/metadata/room_names.dat", "1,kitchen\n")
    root = extract_zip(archive, tmp_path / "root")
    assert (root / "house_A" / "metadata" / "room_names.dat").read_text() == "1,kitchen\n"
    with pytest.raises(TinylocError, match="already exists"):
        extract_zip(archive, root)
    (tmp_path / "bad.zip").write_bytes(b"nope")
    with pytest.raises(DataError, match="not a zip archive"):
        extract_zip(tmp_path / "bad.zip", tmp_path / "other")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "bad.zip", "root"]


# ----------------------------------------------------------------------------- fetch


def test_fetch_uji_offline_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    rc = main(["data", "fetch", "uji", "--dest", str(tmp_path / "data")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"place it at {tmp_path / 'data' / 'UJIndoorLoc.zip'}" in err
    assert uji.UJI_ZIP_SHA256 in err and "--source" in err
    assert not (tmp_path / "data" / "UJIndoorLoc.zip").exists()


def test_fetch_uji_rejects_other_data(tmp_path, monkeypatch, capsys):
    train, test = small_tables()
    fake = tmp_path / "fake.zip"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("UJIndoorLoc/trainingData.csv", train.to_csv(index=False))
        archive.writestr("UJIndoorLoc/validationData.csv", test.to_csv(index=False))
    monkeypatch.setattr(uji, "UJI_URLS", (fake.as_uri(),))
    assert main(["data", "fetch", "uji", "--dest", str(tmp_path / "data")]) == 2
    assert "not the official UJIIndoorLoc data" in capsys.readouterr().err
    assert list((tmp_path / "data").iterdir()) == []


def test_fetch_uji_accepts_rezipped_and_wrapped_archives(uji_zip, tmp_path, monkeypatch, capsys):
    # The same CSVs zipped differently (other bytes, no folder level): accepted by CSV digest.
    rezipped = tmp_path / "rezipped.zip"
    with zipfile.ZipFile(uji_zip) as src, zipfile.ZipFile(rezipped, "w", zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            dst.writestr(name.split("/")[-1], src.read(name))
    monkeypatch.setattr(uji, "UJI_URLS", (rezipped.as_uri(),))
    assert main(["data", "fetch", "uji", "--dest", str(tmp_path / "a")]) == 0
    assert "verified UJIIndoorLoc archive" in capsys.readouterr().out
    assert (tmp_path / "a" / "UJIndoorLoc.zip").read_bytes() == rezipped.read_bytes()

    # A wrapper zip holding the official archive is unpacked to that archive.
    wrapper = tmp_path / "wrapper.zip"
    with zipfile.ZipFile(wrapper, "w") as dst:
        dst.write(uji_zip, "UJIndoorLoc.zip")
    monkeypatch.setattr(uji, "UJI_URLS", ("https://example.invalid/down", wrapper.as_uri()))
    assert main(["data", "fetch", "uji", "--dest", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "UJIndoorLoc.zip").read_bytes() == Path(uji_zip).read_bytes()


def test_fetch_uji_keeps_existing_official_copy(uji_zip, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "data"
    dest.mkdir()
    shutil.copy(uji_zip, dest / "UJIndoorLoc.zip")
    monkeypatch.setattr("urllib.request.urlopen", _offline)
    assert main(["data", "fetch", "uji", "--dest", str(dest)]) == 0
    assert "next: tinyloc data prepare uji --source" in capsys.readouterr().out


def _fake_module(monkeypatch, name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(f"tinyloc_tf.data.{name}")
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(tinyloc_tf.data, name, module, raising=False)
    return module


def test_fetch_inhome_downloads_and_unpacks(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "figshare.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("house_A/metadata/room_names.dat", "1,kitchen\n")
    _fake_module(monkeypatch, "inhome", INHOME_FIGSHARE_URL=archive.as_uri(), INHOME_SHA256=None)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "inhome", "--dest", str(dest)]) == 0
    out = capsys.readouterr().out
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in out  # no published digest: shown
    assert (dest / "inhome" / "house_A" / "metadata" / "room_names.dat").is_file()
    assert f"--source {dest / 'inhome'} --house A" in out


def test_fetch_inhome_checks_published_digest(tmp_path, monkeypatch, capsys):
    archive = tmp_path / "figshare.zip"
    archive.write_bytes(b"PK-not-really")
    _fake_module(monkeypatch, "inhome", INHOME_FIGSHARE_URL=archive.as_uri(), INHOME_SHA256="f" * 64)
    assert main(["data", "fetch", "inhome", "--dest", str(tmp_path / "data")]) == 2
    assert "does not match the expected ffff" in capsys.readouterr().err


# ----------------------------------------------------------------------------- in-home verbs


def test_synth_and_prepare_inhome_pass_their_options(tmp_path, monkeypatch, capsys):
    calls = {}

    def synthesize_house(out, *, seed=0, house="A", floors=2, **options):
        calls["synth"] = (out, seed, house, floors, options)
        return Path(out) / f"house_{house}"

    def prepare_inhome(source, house, out, *, seed=0, val_fraction=0.25, progress=False, **options):
        calls["prepare"] = (source, house, out, seed, val_fraction, options)
        train, test = small_tables()
        return uji.prepare_uji(write_folder(tmp_path / "raw", train, test), out, areas=4)

    _fake_module(monkeypatch, "synth", synthesize_house=synthesize_house)
    _fake_module(monkeypatch, "inhome", prepare_inhome=prepare_inhome,
                 report_lines=lambda meta: [f"report of {len(meta['features'])} features"])
    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--seed", "7", "--house", "B", "--floors", "1",
                 "--living-minutes", "12.5", "--fingerprint-sessions", "2", "--conventions", "real"]) == 0
    assert calls["synth"] == (tmp_path / "s", 7, "B", 1, {"fingerprint_sessions": 2, "living_minutes": 12.5,
                                                          "overwrite": False, "conventions": "real"})
    assert "--source" in capsys.readouterr().out
    assert main(["data", "prepare", "inhome", "--source", str(tmp_path / "s"), "--house", "B",
                 "--out", str(tmp_path / "p"), "--seed", "3", "--block-seconds", "30", "--representation", "dbm"]) == 0
    assert calls["prepare"] == (tmp_path / "s", "B", tmp_path / "p", 3, 0.25,
                                {"block_seconds": 30.0, "overwrite": False, "representation": "dbm"})
    out = capsys.readouterr().out
    assert "train 48, val 16, test 8" in out and "report of 520 features" in out


@pytest.mark.slow
def test_synth_prepare_info_round_trip(tmp_path, capsys):
    pytest.importorskip("tinyloc_tf.data.synth", reason="synthetic house module not present")
    pytest.importorskip("tinyloc_tf.data.inhome", reason="in-home loader not present")
    assert main(["data", "synth", "--out", str(tmp_path / "raw"), "--seed", "1",
                 "--fingerprint-minutes", "12", "--living-minutes", "8"]) == 0
    assert main(["data", "prepare", "inhome", "--source", str(tmp_path / "raw"), "--house", "A",
                 "--out", str(tmp_path / "prep")]) == 0
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "prep"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["T"] == 20 and all(summary["samples"][s] > 0 for s in ("train", "val", "test"))
    assert sum(c["train"] for c in summary["classes"].values()) == summary["steps"]["train"]


def test_a_closed_stdout_ends_the_verb_quietly_with_status_141(tmp_path):
    """``tinyloc data info DIR | head``: when the reader has gone, no "internal error", no
    traceback; the status a shell reports for SIGPIPE."""
    import os
    import subprocess

    from helpers import write_toy_dataset

    data = write_toy_dataset(tmp_path / "toy")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the verb writes a line
    try:
        proc = subprocess.run([sys.executable, "-m", "tinyloc_tf", "data", "info", str(data)], stdout=write_end,
                              stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr.decode()
    assert proc.stderr == b""
