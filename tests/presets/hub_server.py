"""A local stand-in for the Hugging Face hub's HTTP API, enough for huggingface_hub to create a
repository and a branch, upload a folder (regular, non-LFS commits) and download it back
(repo info, file tree, HEAD/GET of resolved files). Point ``HF_ENDPOINT`` at ``HubStandIn().url``.

It keeps every commit in memory; ``files(repo_id, revision)`` returns what a revision holds."""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class HubStandIn:
    def __init__(self):
        self.repos = {}  # repo_id -> {"refs": {branch: sha}, "commits": {sha: {path: bytes}}}
        self.requests = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _body(self):
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("POST", path))
                body = self._body()
                if path == "/api/repos/create":
                    data = json.loads(body)
                    repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    if repo_id in hub.repos:
                        return self._reply(409, {"error": "You already created this model repo",
                                                 "url": f"{hub.url}/{repo_id}"})
                    sha = hub._sha(repo_id, "init")
                    hub.repos[repo_id] = {"refs": {"main": sha}, "commits": {sha: {}}}
                    return self._reply(200, {"url": f"{hub.url}/{repo_id}"})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit|branch)/(.+)", path)
                if not m or m.group(1) not in hub.repos:
                    return self._reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                repo = hub.repos[m.group(1)]
                if m.group(2) == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                        "shouldIgnore": False} for f in files]})
                if m.group(2) == "branch":
                    if m.group(3) in repo["refs"]:
                        return self._reply(409, {"error": "branch exists"})
                    repo["refs"][m.group(3)] = repo["refs"]["main"]
                    return self._reply(200, {})
                branch = m.group(3)
                if branch not in repo["refs"]:
                    return self._reply(404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"})
                tree = dict(repo["commits"][repo["refs"][branch]])
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        tree[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] == "deletedFile":
                        tree.pop(item["value"]["path"], None)
                    elif item["key"] != "header":
                        return self._reply(400, {"error": f"unsupported commit operation {item['key']}"})
                sha = hub._sha(m.group(1), json.dumps(sorted((k, hashlib.sha1(v).hexdigest()) for k, v in tree.items())))
                repo["commits"][sha] = tree
                repo["refs"][branch] = sha
                return self._reply(200, {"commitUrl": f"{hub.url}/{m.group(1)}/commit/{sha}", "commitOid": sha,
                                         "pullRequestUrl": None})

            def _resolve(self, head):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("HEAD" if head else "GET", path))
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
                if m:
                    sha, tree = hub._lookup(m.group(1), m.group(2) or "main")
                    if tree is None:
                        return self._reply(404, {"error": "not found"}, {"X-Error-Code": "RepoNotFound"}, head)
                    return self._reply(200, {"id": m.group(1), "modelId": m.group(1), "sha": sha, "private": False,
                                             "siblings": [{"rfilename": p} for p in sorted(tree)]}, head=head)
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)", path)
                if m:
                    sha, tree = hub._lookup(m.group(1), m.group(2))
                    if tree is None:
                        return self._reply(404, {"error": "not found"}, {"X-Error-Code": "RevisionNotFound"}, head)
                    return self._reply(200, [{"type": "file", "path": p, "size": len(v),
                                              "oid": hashlib.sha1(v).hexdigest()} for p, v in sorted(tree.items())],
                                       head=head)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    sha, tree = hub._lookup(m.group(1), m.group(2))
                    if tree is None or m.group(3) not in tree:
                        return self._reply(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                    content = tree[m.group(3)]
                    return self._reply(200, content, {"X-Repo-Commit": sha,
                                                      "ETag": '"' + hashlib.sha1(content).hexdigest() + '"'}, head)
                return self._reply(404, b"", None, head)

            def do_GET(self):
                self._resolve(head=False)

            def do_HEAD(self):
                self._resolve(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _sha(self, repo_id, salt):
        return hashlib.sha1(f"{repo_id}:{salt}:{len(self.requests)}".encode()).hexdigest()

    def _lookup(self, repo_id, revision):
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, None
        sha = repo["refs"].get(revision, revision)
        return sha, repo["commits"].get(sha)

    def files(self, repo_id, revision="main"):
        return self._lookup(repo_id, revision)[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
