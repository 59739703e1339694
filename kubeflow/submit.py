"""Uploads a compiled spec to a Kubeflow Pipelines v2 backend; starts one run or a cron schedule."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Optional, Tuple

import yaml

DEFAULT_EXPERIMENT = "tfx-finetune"
# The identity header of Kubeflow's multi-user KFP (its manifests' USERID_HEADER, which the
# apiserver reads as KUBEFLOW_USERID_HEADER; `apiserver/common/config.go`).
USER_ID_HEADER = "kubeflow-userid"
# Where the kfp SDK finds a service account token (kfp/client/__init__.py).
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
IN_CLUSTER_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"


class SubmitError(ValueError):
    """The package or the request is unusable; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Submission:
    """What the backend created: the pipeline version and either a run or a recurring run."""

    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: Optional[str] = None
    recurring_run_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who submits, for a multi-user Kubeflow (KFP in a full Kubeflow install): the profile
    namespace the pipeline, experiment and runs belong to, and either the user id sent in the
    identity header (what Kubeflow's gateway sets after login) or a bearer token the API server
    reviews (a service account token). All empty for standalone, single-user KFP.

    Attributes:
      namespace: the profile namespace, e.g. kubeflow-user-example-com.
      user_id: the user, e.g. user@example.com, sent in `user_id_header`.
      user_id_header: the apiserver's KUBEFLOW_USERID_HEADER (`kubeflow-userid` in
        Kubeflow's manifests).
      token_file: a file holding a bearer token; default: $KF_PIPELINES_SA_TOKEN_PATH, or the
        projected token Kubeflow mounts in its pods, when either exists.
    """

    namespace: Optional[str] = None
    user_id: Optional[str] = None
    user_id_header: str = USER_ID_HEADER
    token_file: Optional[str] = None

    def resolved_token_file(self) -> Optional[str]:
        """The token file to use, if any (none when a user id is given).

        Raises:
          SubmitError: when the token file given does not exist.
        """
        if self.user_id:
            return None
        if self.token_file:
            if not os.path.isfile(self.token_file):
                raise SubmitError(f"--token-file {self.token_file}: no such file")
            return self.token_file
        for path in (os.environ.get(TOKEN_PATH_ENV), IN_CLUSTER_TOKEN_PATH):
            if path and os.path.isfile(path):
                return path
        return None


@dataclasses.dataclass(frozen=True)
class Package:
    """A package to upload: the file, its pipeline's name and its default pipeline root."""

    path: str
    pipeline_name: str
    pipeline_root: str


def load_package(package: str) -> Package:
    """Reads the KFP package `finetune compile` wrote (the .yaml beside the .json; given the
    .json, the .yaml beside it is used).

    Raises:
      SubmitError: when the file is missing or holds no pipeline spec.
    """
    if package.endswith(".json"):
        sibling = os.path.splitext(package)[0] + ".yaml"
        if not os.path.isfile(sibling):
            raise SubmitError(
                f"{package} is the PipelineJob for Vertex AI; Kubeflow Pipelines takes the "
                f"package `finetune compile` writes beside it ({sibling}, with the Kubernetes "
                "platform spec): recompile, then pass the .yaml")
        package = sibling
    try:
        with open(package, encoding="utf-8") as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
    except OSError as e:
        raise SubmitError(f"cannot read {package}: {e.strerror}; run `finetune compile "
                          "--output pipeline.json` first and pass pipeline.yaml") from e
    except yaml.YAMLError as e:
        raise SubmitError(f"{package} is not YAML ({e}); pass the .yaml file `finetune "
                          "compile` wrote") from e
    specs = [d for d in documents if isinstance(d, dict) and "pipelineInfo" in d]
    if len(specs) != 1:
        raise SubmitError(f"{package} holds {len(specs)} pipeline specs: pass the .yaml file "
                          "`finetune compile` wrote")
    return Package(package, specs[0]["pipelineInfo"]["name"],
                   specs[0].get("defaultPipelineRoot", ""))


def kfp_cron(schedule: str) -> str:
    """KFP's cron has a leading seconds field; a standard 5-field expression runs at second 0.

    Raises:
      SubmitError: when the expression does not have 5 or 6 fields.
    """
    fields = schedule.split()
    if len(fields) == 5:
        return " ".join(["0"] + fields)
    if len(fields) == 6:
        return " ".join(fields)
    raise SubmitError(f"--schedule {schedule!r}: give a cron expression of 5 fields "
                      "('minute hour day month weekday', e.g. '0 3 * * 1') or 6 with seconds first")


def make_client(host: str, identity: Identity = Identity()):
    """A `kfp.Client` for `host` that identifies as `identity` on every request.

    Raises:
      SubmitError: see `Identity.resolved_token_file`.
    """
    import kfp
    from kfp.client import set_volume_credentials

    token_file = identity.resolved_token_file()
    credentials = (set_volume_credentials.ServiceAccountTokenVolumeCredentials(token_file)
                   if token_file else None)
    # Client's own default namespace, "kubeflow", means "none given" to it.
    client = kfp.Client(host=host, namespace=identity.namespace or "kubeflow",
                        credentials=credentials)
    if identity.user_id:
        # kfp 2.5's Client takes no identity header; its API objects share one
        # kfp_server_api.ApiClient, whose default headers go with every request.
        client._pipelines_api.api_client.set_default_header(  # pylint: disable=protected-access
            identity.user_id_header, identity.user_id)
    return client


def _pipeline_id(client, name: str, namespace: Optional[str]) -> Optional[str]:
    """The id of the pipeline named `name` in `namespace` (kfp 2.5's `get_pipeline_id` lists
    only shared pipelines, so a namespaced one would be uploaded again under the same name)."""
    name_filter = json.dumps({"predicates": [
        {"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    pipelines = client.list_pipelines(filter=name_filter, namespace=namespace).pipelines or []
    if len(pipelines) > 1:
        raise SubmitError(f"{len(pipelines)} pipelines are named {name!r}: delete the extra "
                          "ones in the KFP UI, or compile with another pipeline_name")
    return pipelines[0].pipeline_id if pipelines else None


def _upload(client, package: Package, namespace: Optional[str]) -> Tuple[str, str]:
    """Uploads the package as a new pipeline, or as a new version of the pipeline with its
    name."""
    name = package.pipeline_name
    pipeline_id = _pipeline_id(client, name, namespace)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(package.path, pipeline_name=name,
                                             namespace=namespace).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1,
                                                 sort_by="created_at desc").pipeline_versions
        if not versions:
            raise SubmitError(f"the backend created pipeline {pipeline_id} without a version; "
                              "check the KFP API server's log")
        return pipeline_id, versions[0].pipeline_version_id
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    version = client.upload_pipeline_version(package.path, f"{name} {stamp}",
                                             pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def submit(package: str, host: Optional[str] = None, experiment: str = DEFAULT_EXPERIMENT,
           run_name: Optional[str] = None, schedule: Optional[str] = None,
           identity: Identity = Identity(), client=None) -> Submission:
    """Uploads the compiled pipeline and starts it once, or on `schedule`.

    The pipeline is named after the spec's pipeline name; submitting again adds a version. On
    a multi-user Kubeflow the pipeline, the experiment and so the runs belong to
    `identity.namespace`.

    Args:
      package: the .yaml package written by `finetune compile` (or the .json beside it).
      host: the KFP API endpoint, e.g. http://localhost:8080 after
        `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`.
      experiment: experiment the run or recurring run belongs to (created if missing).
      run_name: display name of the run; defaults to the pipeline name and the time.
      schedule: a cron expression (see `kfp_cron`); creates a recurring run instead of a run.
        Scheduled runs never overlap and do not backfill missed times.
      identity: namespace and user for a multi-user Kubeflow.
      client: a `kfp.Client`; built from `host` and `identity` when None.

    Raises:
      SubmitError: on an unusable package or schedule, or a multi-user backend without a
        namespace or identity.
    """
    loaded = load_package(package)
    cron = kfp_cron(schedule) if schedule else None
    if client is None:
        client = make_client(host, identity)
    namespace = identity.namespace
    if not namespace and client.get_kfp_healthz().multi_user:
        raise SubmitError(
            f"the KFP API at {host} is a multi-user Kubeflow: pass --namespace (your profile's "
            "namespace, e.g. kubeflow-user-example-com) and --user-id (your login, sent in the "
            f"{USER_ID_HEADER} header) or a service account token (--token-file, or "
            f"${TOKEN_PATH_ENV})")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H-%M-%S")
    run_name = run_name or f"{loaded.pipeline_name} {stamp}"
    pipeline_id, version_id = _upload(client, loaded, namespace)
    experiment_id = client.create_experiment(name=experiment,
                                             namespace=namespace).experiment_id
    root = loaded.pipeline_root or None
    if cron:
        recurring = client.create_recurring_run(
            experiment_id=experiment_id, job_name=run_name, cron_expression=cron,
            pipeline_id=pipeline_id, version_id=version_id, pipeline_root=root,
            max_concurrency=1, no_catchup=True)
        return Submission(pipeline_id, version_id, experiment_id,
                          recurring_run_id=recurring.recurring_run_id)
    run = client.run_pipeline(experiment_id=experiment_id, job_name=run_name,
                              pipeline_id=pipeline_id, version_id=version_id,
                              pipeline_root=root)
    return Submission(pipeline_id, version_id, experiment_id, run_id=run.run_id)
