"""A server on 127.0.0.1 that speaks the parts of the Hugging Face Hub's HTTP protocol the
real ``huggingface_hub`` client uses to download files (``/resolve/``) and to create repos,
branches and commits of small ("regular", base64) files. Tests point ``HF_ENDPOINT`` at it.

Not a Hub: no LFS or Xet uploads (every file is declared "regular"), no auth beyond
"private repos need a token", one repo type (models).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


@dataclass
class Repo:
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit sha

    def commit(self, files: dict[str, bytes], branch: str = "main") -> str:
        base = dict(self.commits.get(self.refs.get(branch, ""), {}))
        base.update(files)
        sha = hashlib.sha1(json.dumps(sorted((k, hashlib.sha256(v).hexdigest())
                                             for k, v in base.items())).encode()
                           + str(len(self.commits)).encode()).hexdigest()
        self.commits[sha] = base
        self.refs[branch] = sha
        return sha

    def files_at(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        sha = self.refs.get(revision, revision)
        return (sha, self.commits[sha]) if sha in self.commits else None


class FakeHub:
    """``with FakeHub() as hub:`` ... ``hub.url`` is the endpoint; ``hub.repos`` its state."""

    TOKEN = "hf_test_token"

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.stall = False  # every request waits (a server that hangs)
        self.requests: list[str] = []
        self.times: list[float] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, head=True)

            def do_GET(self) -> None:
                hub._serve(self, head=False)

            def do_POST(self) -> None:
                hub._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stall = False
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
            private: bool = False) -> str:
        repo = self.repos.setdefault(repo_id, Repo(private=private))
        return repo.commit(files, branch)

    # --- protocol ---------------------------------------------------------------------

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: bytes = b"",
               headers: dict[str, str] | None = None, head: bool = False) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str, head: bool = False
               ) -> None:
        body = json.dumps({"error": code}).encode()
        self._reply(h, status, body, {"X-Error-Code": code, "Content-Type": "application/json"},
                    head)

    def _authorized(self, h: BaseHTTPRequestHandler, repo: Repo) -> bool:
        return not repo.private or h.headers.get("Authorization") == f"Bearer {self.TOKEN}"

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        self.requests.append(f"{h.command} {h.path}")
        self.times.append(time.monotonic())
        if self.stall:
            time.sleep(30)
            return
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", h.path.split("?")[0])
        if not match:
            return self._error(h, 404, "NotFound", head)
        repo_id, revision, path = (unquote(g) for g in match.groups())
        repo = self.repos.get(repo_id)
        if repo is None or not self._authorized(h, repo):
            return self._error(h, 401, "RepoNotFound", head)
        found = repo.files_at(revision)
        if found is None:
            return self._error(h, 404, "RevisionNotFound", head)
        sha, files = found
        if path not in files:
            return self._error(h, 404, "EntryNotFound", head)
        body = files[path]
        etag = hashlib.sha256(body).hexdigest()
        self._reply(h, 200, body, {"X-Repo-Commit": sha, "ETag": f'"{etag}"',
                                   "Content-Type": "application/octet-stream"}, head)

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(f"POST {h.path}")
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        authed = h.headers.get("Authorization") == f"Bearer {self.TOKEN}"
        if not authed:
            return self._error(h, 401, "Unauthorized")
        path = h.path.split("?")[0]
        if path == "/api/validate-yaml":  # the model card's metadata: accepted as it is
            return self._reply(h, 200, b"{}", {"Content-Type": "application/json"})
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req.get('organization') or 'user'}/{req['name']}"
            if repo_id in self.repos:
                return self._reply(h, 409, json.dumps({"error": "exists"}).encode())
            private = bool(req.get("private")) or req.get("visibility") == "private"
            self.repos[repo_id] = Repo(private=private)
            self.repos[repo_id].commit({".gitattributes": b"*.safetensors filter=lfs\n"})
            return self._reply(h, 200, json.dumps({"url": f"{self.url}/{repo_id}",
                                                   "name": repo_id}).encode())
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
        if not match or match.group(1) not in self.repos:
            return self._error(h, 404, "RepoNotFound")
        repo_id, action, revision = match.group(1), match.group(2), unquote(match.group(3))
        repo = self.repos[repo_id]
        if action == "branch":
            if revision in repo.refs:
                return self._reply(h, 409, json.dumps({"error": "exists"}).encode())
            repo.refs[revision] = repo.refs["main"]
            return self._reply(h, 200, b"{}")
        if action == "preupload":
            files = json.loads(body)["files"]
            out = {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                             for f in files]}
            return self._reply(h, 200, json.dumps(out).encode(),
                               {"Content-Type": "application/json"})
        if revision not in repo.refs:
            return self._error(h, 404, "RevisionNotFound")
        files = {}
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item.get("key") == "file":
                value = item["value"]
                files[value["path"]] = base64.b64decode(value["content"])
            elif item.get("key") not in ("header", None):
                return self._reply(h, 400, json.dumps({"error": f"no {item['key']}"}).encode())
        sha = repo.commit(files, revision)
        out = {"commitUrl": f"{self.url}/{repo_id}/commit/{sha}", "commitOid": sha,
               "success": True}
        self._reply(h, 200, json.dumps(out).encode(), {"Content-Type": "application/json"})
