"""The HTTP edges (issue 11 D5-D7 and "also seen"; issue 10's lean request path): every error in the one documented
body, strict types, limits before the work, a body read timeout, tokens compared as bytes, the columnar form."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from models.artifacts import content_version
from serving.app import create_app
from serving.settings import Settings
from stack.redis_procs import free_port

NOW = int(time.time())
DOCUMENTED = {"error", "message", "field", "limit"}


def _settings(artifact: Path | None, **kw: Any) -> Settings:
    return Settings(store_url="memory://", artifact=artifact, access_log=False, log_level="warning",
                    **{"max_candidates": 50, **kw})  # fmt: skip


@pytest.fixture
def client(artifact_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(artifact_dir, admin_token="adm", max_body_bytes=8192))) as c:
        yield c


def documented(r: httpx.Response, status: int, error: str | None = None, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) <= DOCUMENTED and {"error", "message"} <= set(body), body
    if error is not None:
        assert body["error"] == error, body
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.mark.parametrize(
    ("path", "content", "field"),
    [
        ("/v1/rank", b"[" * 100_000, "body"),  # 10^5-deep JSON
        ("/v1/events", b'{"events": ' + b"[" * 100_000, "body"),
        ("/v1/rank", b'{"user_id": "u", "candidates": [' + b"[" * 100_000, "body"),
        ("/v1/rank", b'{"user_id": "\xff\xfe", "item_ids": [1]}', "body"),  # invalid UTF-8
        ("/v1/events", b'{"events": [{"user_id": "\xff"}]}', "body"),
        ("/v1/rank", b'{"user_id": "u", "item_ids": [1' + b"0" * 5000 + b"]}", "item_ids[0]"),  # 5,000 digits
        ("/v1/rank", b'{"user_id": "u", "item_ids": [1, 2,', "body"),  # invalid JSON: "body", not "[32]"
        ("/v1/events", b'{"events": [1, 2,', "body"),
        ("/v1/rank", b"", "body"),
        ("/v1/events", b"", "body"),
    ],
)
def test_parse_errors_answer_the_documented_body(artifact_dir: Path, path: str, content: bytes, field: str) -> None:
    with TestClient(create_app(_settings(artifact_dir, max_body_bytes=1 << 20))) as c:
        documented(c.post(path, content=content, headers={"content-type": "application/json"}), 422,
                   "invalid_request", field)  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"user_id": "u", "candidates": [{"item_id": True}]}, "candidates[0].item_id"),  # no bool as an int
        ({"user_id": "u", "item_ids": [1, False]}, "item_ids[1]"),
        ({"user_id": "u", "item_ids": [1], "explore": "yes"}, "explore"),  # no string as a bool
        ({"user_id": "u", "item_ids": [1], "explore": 1}, "explore"),
        ({"user_id": "u", "item_ids": [1.0]}, "item_ids[0]"),  # no float as an int
        ({"user_id": 7, "item_ids": [1]}, "user_id"),
        ({"user_id": "u", "item_ids": [1], "top_n": "3"}, "top_n"),
        ({"user_id": "u", "candidates": [{"item_id": 1, "category": 2}]}, "candidates[0].category"),
        ({"user_id": "u", "item_ids": [1, 2], "category_ids": [3]}, "category_ids"),
        ({"user_id": "u", "item_ids": [1], "candidates": [{"item_id": 1}]}, "candidates"),  # exactly one form
        ({"user_id": "u"}, "candidates"),
        ({"user_id": "u", "item_ids": [4, 5, 4]}, "item_ids[2]"),
    ],
)
def test_strict_types_and_rules_name_the_field(client: TestClient, payload: dict[str, Any], field: str) -> None:
    documented(client.post("/v1/rank", json=payload), 422, field=field)


@pytest.mark.parametrize(
    ("event", "field"),
    [({"item_id": True}, "events[0].item_id"), ({"ts": "1764000000"}, "events[0].ts"),
     ({"action": 1.5}, "events[0].action"), ({"event_id": 5}, "events[0].event_id")],
)
def test_events_are_strict_too(client: TestClient, event: dict[str, Any], field: str) -> None:
    base = {"user_id": "u", "item_id": 1, "category_id": 2, "ts": NOW - 10}
    documented(client.post("/v1/events", json={"events": [{**base, **event}]}), 422, field=field)
    assert client.get("/v1/users/u/behaviors", headers={"Authorization": "Bearer adm"}).json()["length"] == 0


def test_the_columnar_form_ranks_like_the_list_form(client: TestClient) -> None:
    client.post("/v1/events", json={"events": [{"user_id": "c1", "item_id": 10 + i, "category_id": i % 3,
                                                "ts": NOW - 500 + i} for i in range(30)]})  # fmt: skip
    cands = [{"item_id": 100 + i, "category_id": i % 3} for i in range(20)] + [{"item_id": 999}]
    as_list = client.post("/v1/rank", json={"user_id": "c1", "candidates": cands, "top_n": 10})
    as_columns = client.post("/v1/rank", json={"user_id": "c1", "top_n": 10, "item_ids": [c["item_id"] for c in cands],
                                               "category_ids": [c.get("category_id") for c in cands]})
    assert as_list.status_code == as_columns.status_code == 200
    strip = [{k: v for k, v in i.items()} for i in as_list.json()["items"]]
    assert strip == as_columns.json()["items"]
    no_cats = client.post("/v1/rank", json={"user_id": "c1", "item_ids": [1, 2, 3]})
    assert no_cats.status_code == 200 and len(no_cats.json()["items"]) == 3


def test_100k_candidates_are_refused_by_count_before_they_become_objects(artifact_dir: Path) -> None:
    with TestClient(create_app(_settings(artifact_dir, max_candidates=2000))) as c:
        listed = json.dumps({"user_id": "u", "candidates": [{"item_id": i, "category_id": i % 9}
                                                           for i in range(100_000)]}).encode()  # fmt: skip
        assert len(listed) < 4 * 1024 * 1024  # under the body limit: the count is what refuses it
        body = documented(c.post("/v1/rank", content=listed, headers={"content-type": "application/json"}), 422,
                          "limit_exceeded", "candidates")  # fmt: skip
        assert body["limit"] == 2000 and "LONGRANK_MAX_CANDIDATES" in body["message"] and "100000" in body["message"]
        columns = json.dumps({"user_id": "u", "item_ids": list(range(100_000))}).encode()
        body = documented(c.post("/v1/rank", content=columns, headers={"content-type": "application/json"}), 422,
                          "limit_exceeded", "item_ids")  # fmt: skip
        assert body["limit"] == 2000


def test_d7_a_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    """D7: a body over LONGRANK_MAX_BODY_BYTES sent chunked (no Content-Length) answered 400 {"detail": ...}."""

    def chunks() -> Iterator[bytes]:
        yield b'{"user_id": "u", "item_ids": ['
        for _ in range(5000):
            yield b"1,"
        yield b"1]}"

    for path in ("/v1/rank", "/v1/events", "/v1/admin/reload"):
        r = client.post(path, content=chunks(), headers={"content-type": "application/json",
                                                         "Authorization": "Bearer adm"})  # fmt: skip
        body = documented(r, 413, "body_too_large", "body")
        assert body["limit"] == 8192


def test_d5_non_ascii_bytes_in_authorization_are_401_not_500(client: TestClient) -> None:
    """D5: `Authorization: Bearer \\xff\\xfe\\xfd` answered 500 (secrets.compare_digest on a non-ASCII str)."""
    for token in (b"Bearer \xff\xfe\xfd", b"\xff", "Bearer adm\u00e9".encode("latin-1"), b"Bearer "):
        r = client.post("/v1/admin/reload", json={}, headers={"Authorization": token})  # type: ignore[dict-item]
        documented(r, 401, "unauthorized", "Authorization")
        assert r.headers["www-authenticate"] == "Bearer"


def _huge_model_artifact(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose config asks for 2^40 item buckets, with a manifest re-hashed to match."""
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["item_buckets"] = 2**40
    (dst / "config.json").write_text(json.dumps(cfg))
    manifest = json.loads((dst / "manifest.json").read_text())
    data = (dst / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest["version"] = content_version(manifest["files"])
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def test_d6_reload_of_a_model_too_big_to_allocate_is_422_and_the_old_one_serves(
    client: TestClient, artifact_dir: Path, tmp_path: Path
) -> None:
    """D6: an artifact whose (re-hashed) config asks for a huge model answered 500: torch's allocation error is a
    RuntimeError, which the reload did not catch."""
    huge = _huge_model_artifact(artifact_dir, tmp_path / "huge")
    two = {"user_id": "u", "candidates": [{"item_id": 1}, {"item_id": 2}]}
    before = client.post("/v1/rank", json=two).json()["model_version"]
    r = client.post("/v1/admin/reload", json={"artifact": str(huge)}, headers={"Authorization": "Bearer adm"})
    body = documented(r, 422, "reload_failed", "artifact")
    assert "RuntimeError" in body["message"] and before in body["message"]
    assert client.post("/v1/rank", json=two).json()["model_version"] == before


def test_unknown_routes_methods_and_media_types_answer_the_documented_body(client: TestClient) -> None:
    documented(client.get("/v1/nothing"), 404, "not_found")
    documented(client.get("/v1/rank"), 405, "method_not_allowed")
    documented(client.post("/v1/rank", content=b"user_id=u", headers={"content-type": "text/plain"}), 415,
               "unsupported_media_type")  # fmt: skip
    documented(client.get("/v1/users/u/behaviors", params={"limit": "many"}), 422, "invalid_request", "limit")


@pytest.fixture
def live_server(artifact_dir: Path) -> Iterator[str]:
    """A real uvicorn server (the body timeout needs a real socket), stopped at teardown."""
    port = free_port()
    app = create_app(_settings(artifact_dir, body_timeout_s=0.5))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_a_half_sent_body_is_refused_with_408_after_the_body_timeout(live_server: str) -> None:
    host, port = live_server.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"user_id": "u", "item_ids": [1, ')  # fmt: skip
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    body = json.loads(payload)
    assert body["error"] == "body_timeout" and "LONGRANK_BODY_TIMEOUT_S" in body["message"]


def test_user_data_needs_the_data_or_admin_token_when_one_is_set(artifact_dir: Path) -> None:
    with TestClient(create_app(_settings(artifact_dir, data_token="dt", admin_token="adm"))) as c:
        c.post("/v1/events", json={"events": [{"user_id": "p1", "item_id": 1, "category_id": 1, "ts": NOW - 5}]})
        documented(c.get("/v1/users/p1/behaviors"), 401, "unauthorized", "Authorization")
        documented(c.delete("/v1/users/p1"), 401, "unauthorized")
        documented(c.get("/v1/users/p1/behaviors", headers={"Authorization": "Bearer nope"}), 401)
        assert c.get("/v1/users/p1/behaviors", headers={"Authorization": "Bearer dt"}).json()["length"] == 1
        assert c.get("/v1/users/p1/behaviors", headers={"Authorization": "Bearer adm"}).status_code == 200
        assert c.delete("/v1/users/p1", headers={"Authorization": "Bearer dt"}).json()["deleted"] is True
        assert c.post("/v1/rank", json={"user_id": "p1", "item_ids": [1]}).status_code == 200  # serving: open
    with TestClient(create_app(_settings(artifact_dir))) as c:  # no token set: open, as before
        assert c.get("/v1/users/p1/behaviors").status_code == 200


def test_docs_can_be_turned_off_and_the_schema_documents_both_forms(artifact_dir: Path) -> None:
    with TestClient(create_app(_settings(artifact_dir, docs_enabled=False))) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404
    with TestClient(create_app(_settings(artifact_dir, max_candidates=77))) as c:
        schema = c.get("/openapi.json").json()
        assert c.get("/docs").status_code == 200
        components = schema["components"]["schemas"]
        rank = schema["paths"]["/v1/rank"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert rank == {"$ref": "#/components/schemas/RankRequest"}
        assert len(components["RankRequest"]["oneOf"]) == 2
        assert components["RankByList"]["properties"]["candidates"]["maxItems"] == 77  # this app's limit
        assert components["RankByColumns"]["properties"]["item_ids"]["maxItems"] == 77


def test_store_errors_name_no_host(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(store_url=f"redis://:pw@127.0.0.1:{port}/0", store_connect_timeout_s=0.2,
                        store_timeout_s=0.2, access_log=False, log_level="error")  # fmt: skip
    with TestClient(create_app(settings)) as c:
        event = {"user_id": "u", "item_id": 1, "category_id": 1, "ts": NOW - 5}
        body = documented(c.post("/v1/events", json={"events": [event]}), 503, "store_unavailable")
        assert str(port) not in body["message"] and "127.0.0.1" not in body["message"] and "pw" not in body["message"]
        assert c.get("/readyz").json()["store"] == "store_unavailable"


def test_the_redis_password_comes_from_the_environment_or_a_file_not_the_command_line(
    redis_server: Any, tmp_path: Path
) -> None:
    server = redis_server("--requirepass", "s3cret")
    event = {"user_id": "pw", "item_id": 1, "category_id": 1, "ts": NOW - 5}
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret\n")
    for settings in (Settings(store_url=server.url, store_password="s3cret", access_log=False),
                     Settings(store_url=f"{server.url}?password_file={secret}", access_log=False)):  # fmt: skip
        with TestClient(create_app(settings)) as c:
            assert c.post("/v1/events", json={"events": [event]}).status_code == 200
            assert c.get("/readyz").json()["store"] == "ok"
    with TestClient(create_app(Settings(store_url=server.url, access_log=False, store_timeout_s=0.3,
                                        store_connect_timeout_s=0.3))) as c:  # fmt: skip
        body = documented(c.post("/v1/events", json={"events": [event]}), 503, "store_unavailable")
        assert "credentials" in body["message"]
