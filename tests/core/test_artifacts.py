from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelbuilder.core.artifacts import ArtifactStore, check_relpath
from modelbuilder.core.entities import new_run_id
from modelbuilder.errors import InvalidInput, NotFound


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def run_id() -> str:
    return new_run_id()


@pytest.mark.parametrize(
    "relpath",
    [
        "../x",
        "a/../../x",
        "%2e%2e/x",
        "%2e%2e%2fx",
        "/etc/passwd",
        "a\\b",
        "..\\x",
        "C:x",
        "C:/x",
        "a\x00b",
        "a//b",
        "a/./b",
        ".",
        "..",
        "",
        "a/",
        "a\nb",
        ".tmp-123",
        "x" * 1025,
    ],
)
def test_unsafe_paths_are_refused(artifacts: ArtifactStore, run_id: str, relpath: str) -> None:
    with pytest.raises(InvalidInput):
        artifacts.resolve(run_id, relpath)
    with pytest.raises(InvalidInput):
        artifacts.write_bytes(run_id, relpath, b"x")
    assert not (artifacts.root / "x").exists()


@pytest.mark.parametrize("relpath", ["bestModel.onnx", "PetClassifier.Model/ModelInput.cs", "a b/c-d_e.f(1).txt"])
def test_plain_paths_are_accepted(relpath: str) -> None:
    assert check_relpath(relpath) == relpath


@pytest.mark.parametrize("run_id", ["../x", "run-../../x", "run-ABCDEF012345", "run-0123", "", "/tmp"])
def test_run_folders_come_only_from_valid_run_ids(artifacts: ArtifactStore, run_id: str) -> None:
    with pytest.raises(InvalidInput):
        artifacts.run_dir(run_id)


def test_symlinks_out_of_the_run_folder_are_refused(artifacts: ArtifactStore, run_id: str, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    base = artifacts.run_dir(run_id)
    base.mkdir(parents=True)
    (base / "escape").symlink_to(outside, target_is_directory=True)
    (base / "file-link").symlink_to(outside / "secret.txt")
    for relpath in ("escape/secret.txt", "file-link", "escape/new.txt"):
        with pytest.raises(InvalidInput, match="outside"):
            artifacts.resolve(run_id, relpath)
    with pytest.raises(InvalidInput):
        artifacts.write_bytes(run_id, "escape/new.txt", b"x")
    with pytest.raises(InvalidInput):
        artifacts.open(run_id, "file-link")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert [a.path for a in artifacts.list(run_id)] == []  # links are not listed


def test_a_symlink_inside_the_run_folder_is_allowed(artifacts: ArtifactStore, run_id: str) -> None:
    artifacts.write_bytes(run_id, "real/model.onnx", b"onnx")
    (artifacts.run_dir(run_id) / "alias").symlink_to("real", target_is_directory=True)
    assert artifacts.resolve(run_id, "alias/model.onnx").read_bytes() == b"onnx"


def test_writes_are_atomic_and_recorded(artifacts: ArtifactStore, run_id: str, tmp_path: Path) -> None:
    record = artifacts.write_bytes(run_id, "bestModelMap.json", b'["cat", "dog"]')
    assert record.size == 14
    assert record.sha256 == hashlib.sha256(b'["cat", "dog"]').hexdigest()
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(3 << 20))
    copied = artifacts.write_file(run_id, "nested/dir/bestModel.onnx", source)
    assert copied.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    artifacts.write_bytes(run_id, "bestModelMap.json", b'["bird"]')  # replaced whole
    with artifacts.open(run_id, "bestModelMap.json") as handle:
        assert handle.read() == b'["bird"]'
    listed = artifacts.list(run_id)
    assert [(a.path, a.size) for a in listed] == [("bestModelMap.json", 8), ("nested/dir/bestModel.onnx", 3 << 20)]
    assert listed[1].sha256 == copied.sha256
    leftovers = [p.name for p in artifacts.run_dir(run_id).rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_a_failed_write_leaves_no_partial_file(artifacts: ArtifactStore, run_id: str) -> None:
    artifacts.write_bytes(run_id, "model.onnx", b"good")

    with pytest.raises(OSError, match="disk full"):
        artifacts._atomic(run_id, "model.onnx", _failing())
    assert artifacts.resolve(run_id, "model.onnx").read_bytes() == b"good"
    assert [p.name for p in artifacts.run_dir(run_id).iterdir()] == ["model.onnx"]


def _failing() -> Iterator[bytes]:
    yield b"half"
    raise OSError("disk full")


def test_missing_things(artifacts: ArtifactStore, run_id: str, tmp_path: Path) -> None:
    assert artifacts.list(run_id) == []
    with pytest.raises(NotFound):
        artifacts.open(run_id, "bestModel.onnx")
    with pytest.raises(NotFound):
        artifacts.write_file(run_id, "x.bin", tmp_path / "missing.bin")
    assert not artifacts.exists(run_id, "bestModel.onnx")


def test_delete_run(artifacts: ArtifactStore, run_id: str) -> None:
    artifacts.write_bytes(run_id, "a/b.txt", b"x")
    other = new_run_id()
    artifacts.write_bytes(other, "keep.txt", b"y")
    artifacts.delete_run(run_id)
    artifacts.delete_run(run_id)  # nothing left: no error
    assert not artifacts.run_dir(run_id).exists()
    assert artifacts.exists(other, "keep.txt")
