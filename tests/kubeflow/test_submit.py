"""`finetune submit` against a stand-in for the KFP v2 REST API (v2beta1, `kfp_apiserver`),
single-user and multi-user, through the real `kfp.Client`. They check what is sent and what
the server refuses; the submitted package runs in test_open_source_backend.py.
"""
import json

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from kfp_apiserver import NO_IDENTITY, FakeKfpApi
from tfx_finetune.kubeflow import submit as submit_lib


@pytest.fixture
def kfp_api(request):
    server = FakeKfpApi(getattr(request, "param", ())).start()
    yield server
    server.stop()


MULTI_USER = dict(multi_user=True, users={"user@example.com": {"kubeflow-user-example-com"}},
                  tokens={"sa-token": "system:serviceaccount:kubeflow-user-example-com:runner"})


@pytest.fixture
def multi_user_api():
    server = FakeKfpApi(**MULTI_USER)
    server.users["system:serviceaccount:kubeflow-user-example-com:runner"] = {
        "kubeflow-user-example-com"}
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_kfp_context(tmp_path, monkeypatch):
    """kfp.Client reads ~/.config/kfp/context.json; keep the user's out of the test."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                 "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME", "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)


def package_path(compiled):
    return compiled["path"][:-len(".json")] + ".yaml"


def assert_uploaded_is_the_compiled_package(upload, compiled):
    with open(package_path(compiled), encoding="utf-8") as f:
        assert upload == f.read()
    spec, platform = yaml.safe_load_all(upload)
    parsed = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(spec, parsed, ignore_unknown_fields=False)
    assert spec.pop("defaultPipelineRoot") == compiled["settings"].pipeline_root
    assert spec == json.loads(compiled["text"])["pipelineSpec"]
    assert "kubernetes" in platform["platforms"]


def test_schedule_uploads_the_spec_and_creates_a_cron_recurring_run(
        kfp_api, compiled, finetune_parser, capsys):
    args = finetune_parser.parse_args([
        "submit", "--host", kfp_api.url, "--package", package_path(compiled),
        "--experiment", "nightly", "--run-name", "weekly retrain", "--schedule", "0 3 * * 1"])
    assert args.func(args) == 0

    assert len(kfp_api.uploads) == 1
    assert_uploaded_is_the_compiled_package(kfp_api.uploads[0], compiled)
    upload = [r for r in kfp_api.requests if r["path"] == "/apis/v2beta1/pipelines/upload"][0]
    assert upload["query"]["name"] == compiled["spec"].pipeline_info.name
    (experiment,) = kfp_api.posted("/apis/v2beta1/experiments")
    assert experiment["display_name"] == "nightly"
    (recurring,) = kfp_api.posted("/apis/v2beta1/recurringruns")
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert recurring["display_name"] == "weekly retrain"
    assert recurring["experiment_id"] == "experiment-1"
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
    assert_uploaded_is_the_compiled_package(kfp_api.uploads[0], compiled)
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
    not_a_job.write_text("{}")  # no package beside it
    args = finetune_parser.parse_args(["submit", "--host", kfp_api.url,
                                       "--package", str(not_a_job)])
    assert args.func(args) == 2
    assert "is the PipelineJob for Vertex AI" in capsys.readouterr().err
    assert kfp_api.requests == []


def test_the_json_finds_the_package_beside_it(kfp_api, compiled):
    submit_lib.submit(compiled["path"], host=kfp_api.url)
    assert_uploaded_is_the_compiled_package(kfp_api.uploads[0], compiled)


def test_multi_user_submit_with_a_user_id_lands_in_the_namespace(multi_user_api, compiled,
                                                                finetune_parser, capsys):
    args = finetune_parser.parse_args([
        "submit", "--host", multi_user_api.url, "--package", package_path(compiled),
        "--namespace", "kubeflow-user-example-com", "--user-id", "user@example.com"])
    assert args.func(args) == 0, capsys.readouterr().err
    (pipeline,) = multi_user_api.pipelines.values()
    assert pipeline["namespace"] == "kubeflow-user-example-com"
    (experiment,) = multi_user_api.experiments.values()
    assert experiment == {"display_name": "tfx-finetune",
                          "namespace": "kubeflow-user-example-com"}
    (run,) = multi_user_api.runs.values()
    assert run["namespace"] == "kubeflow-user-example-com"
    identified = [r for r in multi_user_api.requests if r["path"] != "/apis/v2beta1/healthz"]
    assert identified and all(r["headers"].get("kubeflow-userid") == "user@example.com"
                              for r in identified)
    # A second submit finds the namespaced pipeline and adds a version.
    assert args.func(args) == 0
    assert len(multi_user_api.pipelines) == 1
    assert len(pipeline["versions"]) == 2 and len(multi_user_api.runs) == 2


def test_multi_user_submit_with_the_service_account_token(multi_user_api, compiled, tmp_path,
                                                         monkeypatch):
    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    done = submit_lib.submit(package_path(compiled), host=multi_user_api.url,
                             identity=submit_lib.Identity(namespace="kubeflow-user-example-com"))
    assert done.run_id == "run-1"
    uploads = [r for r in multi_user_api.requests
               if r["path"] == "/apis/v2beta1/pipelines/upload"]
    assert uploads[0]["headers"]["authorization"] == "Bearer sa-token"
    assert uploads[0]["query"]["namespace"] == "kubeflow-user-example-com"


@pytest.mark.parametrize("identity, message", [
    (submit_lib.Identity(), "is a multi-user Kubeflow: pass --namespace"),
    (submit_lib.Identity(namespace="kubeflow-user-example-com"), NO_IDENTITY),
    (submit_lib.Identity(namespace="team-b", user_id="user@example.com"),
     "User 'user@example.com' is not authorized"),
])
def test_multi_user_refusals_name_what_is_missing(multi_user_api, compiled, finetune_parser,
                                                  capsys, identity, message):
    argv = ["submit", "--host", multi_user_api.url, "--package", package_path(compiled)]
    if identity.namespace:
        argv += ["--namespace", identity.namespace]
    if identity.user_id:
        argv += ["--user-id", identity.user_id]
    args = finetune_parser.parse_args(argv)
    assert args.func(args) == 2
    assert message in capsys.readouterr().err
    assert not multi_user_api.runs


@pytest.mark.parametrize("request_kind", ["upload", "experiment"])
def test_the_fake_multi_user_server_refuses_requests_without_a_namespace(multi_user_api,
                                                                        compiled, request_kind):
    """What the stand-in refuses, through kfp.Client directly: an upload or experiment with an
    identity but no namespace."""
    client = submit_lib.make_client(multi_user_api.url,
                                    submit_lib.Identity(user_id="user@example.com"))
    import kfp_server_api

    with pytest.raises(kfp_server_api.ApiException) as refused:
        if request_kind == "upload":
            client.upload_pipeline(package_path(compiled), pipeline_name="p")
        else:
            client._experiment_api.create_experiment(  # pylint: disable=protected-access
                kfp_server_api.V2beta1Experiment(display_name="e"))
    assert refused.value.status == 400
    assert "namespace" in refused.value.body.lower()
