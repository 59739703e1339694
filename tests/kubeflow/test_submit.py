"""`finetune submit` against a recording stand-in for the KFP v2 REST API (v2beta1).

These are contract tests: the server below answers in the shape of the KFP API server that
kfp 2.5's client talks to (healthz, pipelines, upload, experiments, runs, recurringruns). They
check what our code sends through the real `kfp.Client`; they do not prove a cluster runs it.
"""
import email.parser
import email.policy
import http.server
import json
import threading
import urllib.parse

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from tfx_finetune.kubeflow import submit as submit_lib


class FakeKfpApi(http.server.ThreadingHTTPServer):
    """Records every request; knows pipelines by display name once uploaded."""

    def __init__(self, known_pipelines=()):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = []
        self.pipelines = {name: f"pipeline-{i}" for i, name in enumerate(known_pipelines)}
        self.uploads = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def posted(self, path):
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == path]


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
        self.server.requests.append(
            {"method": self.command, "path": url.path, "query": query, "body": body})
        return url.path, query

    def do_GET(self):
        path, query = self._record()
        server = self.server
        if path == "/apis/v2beta1/healthz":
            return self._reply({"multi_user": False})
        if path == "/apis/v2beta1/pipelines":
            name = json.loads(query["filter"])["predicates"][0]["stringValue"]
            if name in server.pipelines:
                return self._reply({"pipelines": [
                    {"pipeline_id": server.pipelines[name], "display_name": name}],
                    "total_size": 1})
            return self._reply({})
        if path.startswith("/apis/v2beta1/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[4]
            return self._reply({"pipeline_versions": [
                {"pipeline_id": pipeline_id, "pipeline_version_id": f"{pipeline_id}-v1"}],
                "total_size": 1})
        if path == "/apis/v2beta1/experiments":
            return self._reply({})
        return self._reply({"error_message": f"no route {path}"}, status=404)

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        raw = self.rfile.read(length)
        content_type = self.headers["Content-Type"]
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
            parts = {part.get_param("name", header="content-disposition"):
                     part.get_content() for part in message.iter_parts()}
            body = {"uploadfile": parts["uploadfile"]}
        else:
            body = json.loads(raw)
        path, query = self._record(body)
        server = self.server
        if path == "/apis/v2beta1/pipelines/upload":
            server.uploads.append(body["uploadfile"])
            server.pipelines[query["name"]] = f"pipeline-{len(server.pipelines)}"
            return self._reply({"pipeline_id": server.pipelines[query["name"]],
                                "display_name": query["name"]})
        if path == "/apis/v2beta1/pipelines/upload_version":
            server.uploads.append(body["uploadfile"])
            return self._reply({"pipeline_id": query["pipelineid"],
                                "pipeline_version_id": f"{query['pipelineid']}-v2",
                                "display_name": query["name"]})
        if path == "/apis/v2beta1/experiments":
            return self._reply({"experiment_id": "experiment-7", **body})
        if path == "/apis/v2beta1/runs":
            return self._reply({"run_id": "run-1", **body})
        if path == "/apis/v2beta1/recurringruns":
            return self._reply({"recurring_run_id": "recurring-1", **body})
        return self._reply({"error_message": f"no route {path}"}, status=404)


@pytest.fixture
def kfp_api(request):
    server = FakeKfpApi(getattr(request, "param", ()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_kfp_context(tmp_path, monkeypatch):
    """kfp.Client reads ~/.config/kfp/context.json; keep the user's out of the test."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                 "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


def assert_uploaded_is_the_compiled_spec(upload, compiled):
    uploaded = yaml.safe_load(upload)
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(uploaded, spec, ignore_unknown_fields=False)
    expected = json.loads(compiled["text"])["pipelineSpec"]
    assert uploaded.pop("defaultPipelineRoot") == compiled["settings"].pipeline_root
    assert uploaded == expected


def test_schedule_uploads_the_spec_and_creates_a_cron_recurring_run(
        kfp_api, compiled, finetune_parser, capsys):
    args = finetune_parser.parse_args([
        "submit", "--host", kfp_api.url, "--package", compiled["path"],
        "--experiment", "nightly", "--run-name", "weekly retrain", "--schedule", "0 3 * * 1"])
    assert args.func(args) == 0

    assert len(kfp_api.uploads) == 1
    assert_uploaded_is_the_compiled_spec(kfp_api.uploads[0], compiled)
    upload = [r for r in kfp_api.requests if r["path"] == "/apis/v2beta1/pipelines/upload"][0]
    assert upload["query"]["name"] == compiled["spec"].pipeline_info.name
    (experiment,) = kfp_api.posted("/apis/v2beta1/experiments")
    assert experiment["display_name"] == "nightly"
    (recurring,) = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert recurring["display_name"] == "weekly retrain"
    assert recurring["experiment_id"] == "experiment-7"
    assert recurring["mode"] == "ENABLE"
    # int64 in the API: grpc-gateway accepts a JSON number or string.
    assert int(recurring["max_concurrency"]) == 1
    assert recurring["no_catchup"] is True
    assert recurring["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-0", "pipeline_version_id": "pipeline-0-v1"}
    assert recurring["runtime_config"]["pipeline_root"] == compiled["settings"].pipeline_root
    assert not kfp_api.posted("/apis/v2beta1/runs")
    assert "recurring run recurring-1 created" in capsys.readouterr().out


@pytest.mark.parametrize("kfp_api", [("tfx-finetune",)], indirect=True)
def test_a_known_pipeline_gets_a_new_version_and_one_run(kfp_api, compiled):
    done = submit_lib.submit(compiled["path"], host=kfp_api.url, run_name="retrain now")
    assert not kfp_api.posted("/apis/v2beta1/pipelines/upload")
    (version_upload,) = [r for r in kfp_api.requests
                         if r["path"] == "/apis/v2beta1/pipelines/upload_version"]
    assert version_upload["query"]["pipelineid"] == "pipeline-0"
    assert_uploaded_is_the_compiled_spec(kfp_api.uploads[0], compiled)
    (run,) = kfp_api.posted("/apis/v2beta1/runs")
    assert run["display_name"] == "retrain now"
    assert run["pipeline_version_reference"] == {
        "pipeline_id": "pipeline-0", "pipeline_version_id": "pipeline-0-v2"}
    assert run["runtime_config"]["pipeline_root"] == compiled["settings"].pipeline_root
    assert "pipeline_spec" not in run
    assert not kfp_api.posted("/apis/v2beta1/recurringruns")
    assert (done.run_id, done.recurring_run_id) == ("run-1", None)


@pytest.mark.parametrize("schedule, cron", [
    ("0 3 * * 1", "0 0 3 * * 1"), ("30 0 3 * * *", "30 0 3 * * *")])
def test_cron_gets_the_seconds_field_kfp_expects(schedule, cron):
    assert submit_lib.kfp_cron(schedule) == cron


def test_bad_input_is_refused_before_any_request(tmp_path, kfp_api, compiled, finetune_parser,
                                                 capsys):
    with pytest.raises(submit_lib.SubmitError, match="5 fields"):
        submit_lib.submit(compiled["path"], host=kfp_api.url, schedule="daily")
    not_a_job = tmp_path / "spec.json"
    not_a_job.write_text("{}")
    args = finetune_parser.parse_args(["submit", "--host", kfp_api.url,
                                       "--package", str(not_a_job)])
    assert args.func(args) == 2
    assert "has no pipelineSpec" in capsys.readouterr().err
    assert kfp_api.requests == []
