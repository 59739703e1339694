"""A test-only stand-in for the Kubeflow Pipelines v2 API server (REST, v2beta1), single-user
or multi-user, written from its source (github.com/kubeflow/pipelines `backend/src/apiserver/`,
2.17.0) and answering in the shape kfp 2.5's client reads. It records every request, and
keeps what was uploaded and started so that a test can run it (`kfp_backend.Backend`).

Multi-user mode, as a full Kubeflow install runs KFP:
- Every request but healthz needs a user identity (`auth/auth.go`, `auth/
  authenticator_http_headers.go`, `auth/authenticator_token_review.go`): the
  KUBEFLOW_USERID_HEADER (`kubeflow-userid` in Kubeflow's manifests,
  `manifests/kustomize/base/installs/generic/pipeline-install-config.yaml`, prefix ""), or a
  bearer token, which the server reviews with a TokenReview; neither is 401 "Request header
  error: there is no user identity header.".
- Pipelines, experiments and runs live in a namespace; the user must be allowed there
  (`resource/resource_manager.go` IsAuthorized, a SubjectAccessReview; 403 otherwise).
  A pipeline upload without a namespace is refused ("Namespace is required for pipeline
  operations", `validation/namespace.go`; modelled with namespaces required for pipelines, the
  stricter setting), as is an experiment without one ("An experiment cannot have an empty
  namespace in multi-user mode", `server/experiment_server.go`). A run takes its experiment's
  namespace (`resource_manager.go`).
- Uploads are parsed as the server parses them (`template/v2_template.go`,
  `kfp_backend.parse_package`); a package it refuses is a 400.
"""
import email.parser
import email.policy
import http.server
import json
import threading
import urllib.parse
from typing import Dict, Iterable, Mapping, Optional

from kfp_backend import RefusedSpec, parse_package

API = "/apis/v2beta1"
NO_IDENTITY = "Request header error: there is no user identity header."
EMPTY_EXPERIMENT_NAMESPACE = "An experiment cannot have an empty namespace in multi-user mode"


class ApiError(Exception):
    """An error answer: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FakeKfpApi(http.server.ThreadingHTTPServer):
    """The API server. `users` maps each user to the namespaces it may use; `tokens` maps the
    bearer tokens a TokenReview accepts to their users (multi-user mode only)."""

    def __init__(self, known_pipelines: Iterable[str] = (), multi_user: bool = False,
                 users: Optional[Mapping[str, Iterable[str]]] = None,
                 tokens: Optional[Mapping[str, str]] = None,
                 user_id_header: str = "kubeflow-userid"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.multi_user = multi_user
        self.users = {u: set(ns) for u, ns in (users or {}).items()}
        self.tokens = dict(tokens or {})
        self.user_id_header = user_id_header
        self.requests = []
        self.uploads = []
        # pipeline id -> {"name", "namespace", "versions": [version id]}
        self.pipelines: Dict[str, dict] = {}
        self.versions: Dict[str, str] = {}  # version id -> the uploaded package
        self.experiments: Dict[str, dict] = {}
        self.runs: Dict[str, dict] = {}
        self.recurring_runs: Dict[str, dict] = {}
        for name in known_pipelines:
            pipeline_id = f"pipeline-{len(self.pipelines)}"
            self.pipelines[pipeline_id] = {"name": name, "namespace": "",
                                           "versions": [f"{pipeline_id}-v1"]}

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, path):
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == path]

    def start(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.shutdown()
        self.server_close()

    # ----- multi-user ---------------------------------------------------------------------
    def authenticate(self, headers) -> Optional[str]:
        """The user of a request (None in single-user mode)."""
        if not self.multi_user:
            return None
        values = headers.get_all(self.user_id_header) or []
        if len(values) > 1:
            raise ApiError(401, f"Request header error: unexpected number of "
                                f"'{self.user_id_header}' headers. Expect 1 got {len(values)}")
        if values:
            return values[0]
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            user = self.tokens.get(authorization[len("Bearer "):])
            if user is None:
                raise ApiError(401, "Request header error: Failed to review the token "
                                    "provided")
            return user
        raise ApiError(401, NO_IDENTITY)

    def authorize(self, user: Optional[str], namespace: str, what: str) -> None:
        if not self.multi_user:
            return
        if namespace not in self.users.get(user, ()):
            raise ApiError(403, f"PermissionDenied: User '{user}' is not authorized with "
                                f"reason: (request: {what} in namespace {namespace!r})")

    def namespace(self, given: str, user: Optional[str], what: str, required: str) -> str:
        """`ReplaceNamespace` (namespaces exist only in multi-user mode), refused when empty
        with the server's `required` message, and authorized for `user`."""
        namespace = given if self.multi_user else ""
        if self.multi_user and not namespace:
            raise ApiError(400, f"Invalid input error: {required}")
        self.authorize(user, namespace, what)
        return namespace

    # ----- resources ----------------------------------------------------------------------
    def add_version(self, pipeline_id: str, package: str) -> str:
        try:
            parse_package(package)
        except RefusedSpec as e:
            raise ApiError(400, f"Invalid input error: {e}") from e
        self.uploads.append(package)
        versions = self.pipelines[pipeline_id]["versions"]
        versions.append(f"{pipeline_id}-v{len(versions) + 1}")
        self.versions[versions[-1]] = package
        return versions[-1]

    def start_run(self, body: dict, user: Optional[str], collection: dict, prefix: str
                  ) -> dict:
        experiment = self.experiments.get(body.get("experiment_id", ""))
        if self.multi_user and experiment is None:
            raise ApiError(400, "Invalid input error: a run needs an experiment in "
                                "multi-user mode")
        namespace = experiment["namespace"] if experiment else ""
        self.authorize(user, namespace, f"create {prefix}")
        reference = body["pipeline_version_reference"]
        if reference["pipeline_version_id"] not in self.versions:
            raise ApiError(404, f"pipeline version {reference['pipeline_version_id']} not "
                                "found")
        run_id = f"{prefix}-{len(collection) + 1}"
        collection[run_id] = dict(body, namespace=namespace, run_id=run_id)
        return collection[run_id]


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        """Keeps the test output clean."""

    def _reply(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body=None):
        url = urllib.parse.urlparse(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.server.requests.append({"method": self.command, "path": url.path, "query": query,
                                     "body": body, "headers": dict(self.headers)})
        return url.path, query

    def _answer(self, route, *args):
        try:
            self._reply(route(*args))
        except ApiError as e:
            self._reply({"error_message": str(e), "message": str(e)}, status=e.status)

    def do_GET(self):
        path, query = self._record()
        self._answer(self._get, path, query)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        content_type = self.headers["Content-Type"]
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
            parts = {part.get_param("name", header="content-disposition"):
                     part.get_content() for part in message.iter_parts()}
            upload = parts["uploadfile"]
            body = {"uploadfile": upload.decode() if isinstance(upload, bytes) else upload}
        else:
            body = json.loads(raw)
        path, query = self._record(body)
        self._answer(self._post, path, query, body)

    def _get(self, path, query):
        server = self.server
        if path == f"{API}/healthz":
            return {"multi_user": server.multi_user}
        user = server.authenticate(self.headers)
        if path == f"{API}/pipelines":
            namespace = query.get("namespace", "") if server.multi_user else ""
            if namespace:
                server.authorize(user, namespace, "list pipelines")
            name = json.loads(query["filter"])["predicates"][0]["stringValue"]
            found = [{"pipeline_id": i, "display_name": p["name"], "namespace": p["namespace"]}
                     for i, p in server.pipelines.items()
                     if p["name"] == name and p["namespace"] == namespace]
            return {"pipelines": found, "total_size": len(found)} if found else {}
        if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[4]
            pipeline = server.pipelines[pipeline_id]
            server.authorize(user, pipeline["namespace"], "list pipeline versions")
            newest = list(reversed(pipeline["versions"]))
            return {"pipeline_versions": [{"pipeline_id": pipeline_id, "pipeline_version_id": v}
                                          for v in newest[:int(query.get("page_size", 10))]],
                    "total_size": len(newest)}
        if path == f"{API}/experiments":
            namespace = server.namespace(query.get("namespace", ""), user, "list experiments",
                                         EMPTY_EXPERIMENT_NAMESPACE)
            name = json.loads(query["filter"])["predicates"][0]["stringValue"] \
                if "filter" in query else None
            found = [dict(e, experiment_id=i) for i, e in server.experiments.items()
                     if e["namespace"] == namespace and name in (None, e["display_name"])]
            return {"experiments": found, "total_size": len(found)} if found else {}
        raise ApiError(404, f"no route {path}")

    def _post(self, path, query, body):
        server = self.server
        user = server.authenticate(self.headers)
        if path == f"{API}/pipelines/upload":
            namespace = server.namespace(query.get("namespace", ""), user, "create pipelines",
                                         "Namespace is required for pipeline operations")
            if any(p["name"] == query["name"] and p["namespace"] == namespace
                   for p in server.pipelines.values()):
                raise ApiError(409, f"Already exist error: pipeline {query['name']!r} exists "
                                    f"in namespace {namespace!r}")
            pipeline_id = f"pipeline-{len(server.pipelines)}"
            server.pipelines[pipeline_id] = {"name": query["name"], "namespace": namespace,
                                             "versions": []}
            server.add_version(pipeline_id, body["uploadfile"])
            return {"pipeline_id": pipeline_id, "display_name": query["name"],
                    "namespace": namespace}
        if path == f"{API}/pipelines/upload_version":
            pipeline = server.pipelines.get(query["pipelineid"])
            if pipeline is None:
                raise ApiError(404, f"pipeline {query['pipelineid']} not found")
            server.authorize(user, pipeline["namespace"], "create pipeline versions")
            version = server.add_version(query["pipelineid"], body["uploadfile"])
            return {"pipeline_id": query["pipelineid"], "pipeline_version_id": version,
                    "display_name": query["name"]}
        if path == f"{API}/experiments":
            namespace = server.namespace(body.get("namespace", ""), user, "create experiments",
                                         EMPTY_EXPERIMENT_NAMESPACE)
            experiment_id = f"experiment-{len(server.experiments) + 1}"
            server.experiments[experiment_id] = {"display_name": body["display_name"],
                                                 "namespace": namespace}
            return dict(body, experiment_id=experiment_id, namespace=namespace)
        if path == f"{API}/runs":
            return server.start_run(body, user, server.runs, "run")
        if path == f"{API}/recurringruns":
            run = server.start_run(body, user, server.recurring_runs, "recurring")
            return dict(run, recurring_run_id=run["run_id"])
        raise ApiError(404, f"no route {path}")
