"""Data assets through the REST API, with a token: uploads in chunks that resume after an interruption, and
hostile uploads refused with one line each, nothing written outside the asset's folder."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from filelock import FileLock

from modelbuilder.config import Settings
from modelbuilder.core.services import Services
from modelbuilder.sdk import data, uploads
from modelbuilder.sdk.client import Client
from modelbuilder.server.api import create_app
from tests.imagery import labeled_image, make_image_folder

from .conftest import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/api/v1/workspaces/default/data"


def png(label: str, index: int) -> bytes:
    out = io.BytesIO()
    labeled_image(label, index).save(out, format="PNG")
    return out.getvalue()


def zip_of(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, body in members:
            archive.writestr(info, body)
    return out.getvalue()


GOOD = [(f"pets/{label}/{i}.png", png(label, i)) for label in ("cat", "dog") for i in range(3)]


def declaring(size: int) -> bytes:
    """A zip whose first member's central directory entry claims `size` bytes unpacked (it holds a few)."""
    body = bytearray(zip_of([("pets/cat/big.png", b"small")] + GOOD))
    entry = body.index(b"PK\x01\x02")  # the first central directory entry; its uncompressed size is at +24
    body[entry + 24:entry + 28] = size.to_bytes(4, "little")
    return bytes(body)


def pack_with_wrong_sha() -> bytes:
    files = [{"path": f"{label}/0.png", "label": label, "sha256": "0" * 64, "size": 1} for label in ("cat", "dog")]
    manifest = json.dumps({"format": "modelbuilder.data/1", "files": files}).encode()
    return zip_of([("manifest.json", manifest), ("images/cat/0.png", png("cat", 0)),
                   ("images/dog/0.png", png("dog", 0))])


def send(client: TestClient, body: bytes, name: str = "pets", chunk: int = 1 << 20) -> httpx.Response:
    """Upload `body` as a zip through the API's three steps; the last answer."""
    started = client.post(f"{API}/uploads", headers=AUTH, json={"name": name, "size": len(body),
                                                                "sha256": hashlib.sha256(body).hexdigest()})
    if started.status_code != 201:
        return started
    upload = started.json()
    for offset in range(upload["offset"], len(body), chunk):
        answer = client.put(f"{API}/uploads/{upload['id']}", params={"offset": offset}, headers=AUTH,
                            content=body[offset:offset + chunk])
        assert answer.status_code == 200, answer.text
    return client.post(f"{API}/uploads/{upload['id']}/complete", headers=AUTH)


@pytest.fixture
def api(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MODELBUILDER_MAX_UPLOAD_MB", "4")
    app = create_app(Settings(token=TOKEN), start_agents=False)
    with TestClient(app, base_url="http://testserver.example") as test_client:
        yield test_client


def files_outside(root: Path, keep: Path) -> set[str]:
    """Every file under `root` but those under `keep` and the store's own (its WAL files come and go)."""
    return {str(p) for p in root.rglob("*") if not p.is_relative_to(keep) and not p.name.startswith("modelbuilder.db")}


def test_a_browser_zip_becomes_version_1_and_again_makes_no_new_version(api: TestClient) -> None:
    body = zip_of(GOOD + [("pets/cat/notes.png", b"not an image"), ("pets/readme.txt", b"hi")])
    done = send(api, body, chunk=1000)
    assert done.status_code == 200, done.text
    version = done.json()["version"]
    assert (version["ref"], version["labels"], done.json()["created"]) == ("pets:1", {"cat": 3, "dog": 3}, True)
    reasons = {s["path"]: s["reason"] for s in version["report"]["skipped"]}
    assert reasons["cat/notes.png"].startswith("not an image")
    assert "outside any label" in reasons["readme.txt"]
    summary = " ".join(line["text"] for line in version["report"]["summary"])
    assert "6 images in 2 labels: cat 3, dog 3." in summary
    assert "Labelling conflicts: 0 pairs" in summary
    conflict = send(api, zip_of([*GOOD, ("pets/dog/copy.png", GOOD[0][1])]), name="conflict").json()["version"]
    assert conflict["report"]["duplicates"]["across_labels"] == 1  # cat/0.png filed under dog too
    again = send(api, body)
    assert again.json()["version"]["version"] == 1
    assert again.json()["created"] is False
    listed = api.get(API, headers=AUTH).json()
    assert [(a["name"], len(a["versions"])) for a in listed] == [("conflict", 1), ("pets", 1)]
    assert api.get(API).status_code == 401  # the token is needed


def pack_listing(path: str) -> bytes:
    """A pack whose manifest lists `path` for one of its images."""
    files = [{"path": p, "label": label, "sha256": hashlib.sha256(png(label, 0)).hexdigest(), "size": 1}
             for p, label in ((path, "cat"), ("dog/0.png", "dog"))]
    manifest = json.dumps({"format": "modelbuilder.data/1", "files": files}).encode()
    return zip_of([("manifest.json", manifest), (f"images/{path}", png("cat", 0)), ("images/dog/0.png", png("dog", 0))])


HOSTILE = {
    "dot-dot": ([("../evil.png", png("cat", 0))] + GOOD, 422, "would leave its folder"),
    "absolute": ([("/tmp/evil.png", png("cat", 0))] + GOOD, 422, "absolute path"),
    "symlink": ([(zipfile.ZipInfo("pets/cat/link.png"), b"/etc/passwd")] + GOOD, 422, "symbolic link"),
    "bomb": ([("pets/cat/bomb.png", bytes(3 << 20))] + GOOD, 422, "zip bomb"),
    "not-a-zip": (b"PK\x03\x04 this is not a zip", 422, "not a zip archive"),
    "declared-huge": (declaring(0xFFFF0000), 413, "declare more than 4 MiB unpacked"),
    "wrong-sha": (pack_with_wrong_sha(), 422, "does not match its SHA-256 in the manifest"),
    "manifest-absolute": (pack_listing("/etc/cat.png"), 422, "is not a modelbuilder.data/1 manifest"),
    "manifest-drive": (pack_listing("C:/cat/0.png"), 422, "is not a modelbuilder.data/1 manifest"),
    "one-label": ([(f"pets/cat/{i}.png", png("cat", i)) for i in range(3)], 422, "one label only"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_uploads_are_refused_with_one_line(api: TestClient, services_root: Path, case: str) -> None:
    members, status, reason = HOSTILE[case]
    if case == "symlink":
        members[0][0].external_attr = (stat.S_IFLNK | 0o777) << 16
    body = members if isinstance(members, bytes) else zip_of(members)
    before = files_outside(services_root.parent.parent, services_root)
    answer = send(api, body)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert reason in error["message"]
    assert "\n" not in error["message"]
    assert error["hint"]
    assert api.get(API, headers=AUTH).json() == []
    data_root = services_root / "data"
    versions = [p for p in data_root.iterdir() if p.name.startswith("data-")] if data_root.exists() else []
    assert not versions
    assert files_outside(services_root.parent.parent, services_root) == before  # nothing written outside
    assert not any(p.is_file() for p in (data_root / ".staging").rglob("*")) if data_root.exists() else True


@pytest.fixture
def services_root(api: TestClient) -> Path:
    """The app's artifact root."""
    return Path(api.app.state.server.services.settings.artifacts)  # type: ignore[attr-defined]


def test_uploads_over_the_cap_are_refused(api: TestClient) -> None:
    started = api.post(f"{API}/uploads", headers=AUTH, json={"name": "pets", "size": 5 << 20, "sha256": "0" * 64})
    assert started.status_code == 413
    assert "over the server's cap of 4 MiB" in started.json()["message"]
    small = api.post(f"{API}/uploads", headers=AUTH, json={"name": "pets", "size": 10, "sha256": "0" * 64}).json()
    past = api.put(f"{API}/uploads/{small['id']}", params={"offset": 0}, headers=AUTH, content=b"x" * 11)
    assert past.status_code == 413
    assert "declared size" in past.json()["message"]
    big = api.put(f"{API}/uploads/{small['id']}", params={"offset": 0}, headers=AUTH, content=b"x" * ((8 << 20) + 1))
    assert big.status_code == 413
    wrong = api.put(f"{API}/uploads/{small['id']}", params={"offset": 5}, headers=AUTH, content=b"x")
    assert wrong.status_code == 409
    assert "starts at byte 0" in wrong.json()["hint"]


def test_completing_twice_answers_the_same_and_a_busy_upload_says_so(api: TestClient, services_root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose connection dropped while the server unpacked asks again: the same version, not 'no such
    upload'; while the first request still holds the upload, the second is told to ask again (409 busy)."""
    body = zip_of(GOOD)
    done = send(api, body)
    assert done.status_code == 200, done.text
    upload_id = api.post(f"{API}/uploads", headers=AUTH, json={"name": "pets", "size": len(body), "sha256":
                                                               hashlib.sha256(body).hexdigest()}).json()["id"]
    assert api.post(f"{API}/uploads/{upload_id}/complete", headers=AUTH).status_code == 409  # started anew, empty
    for offset in range(0, len(body), 1 << 20):
        api.put(f"{API}/uploads/{upload_id}", params={"offset": offset}, headers=AUTH,
                content=body[offset:offset + (1 << 20)])
    first = api.post(f"{API}/uploads/{upload_id}/complete", headers=AUTH)
    again = api.post(f"{API}/uploads/{upload_id}/complete", headers=AUTH)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert (again.json()["version"]["ref"], again.json()["created"]) == ("pets:1", False)
    assert api.get(f"/api/v1/workspaces/other/data/uploads/{upload_id}", headers=AUTH).status_code == 404
    monkeypatch.setattr(uploads, "LOCK_WAIT_S", 0.1)
    lock = services_root / "data" / uploads.UPLOADS / f"{upload_id}.lock"
    with FileLock(str(lock)):
        busy = api.post(f"{API}/uploads/{upload_id}/complete", headers=AUTH)
    assert (busy.status_code, busy.json()["code"]) == (409, "busy")
    assert "ask again" in busy.json()["hint"]


class Interrupted(httpx.BaseTransport):
    """The server's transport, until it is gone after `puts` chunks (as a dropped connection)."""

    def __init__(self, inner: httpx.BaseTransport, puts: int) -> None:
        self.inner, self.puts, self.gone = inner, puts, False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            self.puts -= 1
            self.gone = self.gone or self.puts < 0
        if self.gone:
            raise httpx.ConnectError("connection refused", request=request)
        return self.inner.handle_request(request)


def test_an_interrupted_upload_resumes_where_it_stopped(api: TestClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_image_folder(tmp_path / "pets", per_label=8)
    client_home = tmp_path / "client-home"  # the client's own, empty home: it shares nothing with the server
    monkeypatch.setenv("MODELBUILDER_HOME", str(client_home))
    local = Services(Settings(home=client_home))
    inner = api._transport  # noqa: SLF001 - the in-process server, as a transport
    flaky = Client("http://testserver.example", TOKEN, transport=Interrupted(inner, puts=3), retries=1)
    with pytest.raises(Exception, match="Cannot reach the server") as stopped:
        data.upload(local, folder, "pets", client=flaky, chunk_size=4096)
    assert "\n" not in str(stopped.value)
    progress: list[tuple[int, int]] = []
    with Client("http://testserver.example", TOKEN, transport=inner) as client:
        uploaded = data.upload(local, folder, "pets", client=client, chunk_size=4096,
                               on_progress=lambda done, total: progress.append((done, total)))
    assert uploaded.created
    assert uploaded.version.ref == "pets:1"
    assert progress[0][0] == 3 * 4096  # it went on from the three chunks the server had
    assert uploaded.sent == uploaded.packed_size - 3 * 4096
    assert uploaded.version.labels == {"cat": 8, "dog": 8}
    assert not (client_home / "modelbuilder.db").exists()  # the client used no store of its own
    with Client("http://testserver.example", TOKEN, transport=inner) as client:
        again = data.upload(local, folder, "pets", client=client)
        assert (again.created, again.sent, again.version.version) == (False, 0, 1)  # known by its content
        target = tmp_path / "back"
        data.download(local, "pets:1", target, client=client)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png")) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    for path in folder.rglob("*.*"):
        assert (target / path.relative_to(folder)).read_bytes() == path.read_bytes()
