"""Uploads a compiled spec to a Kubeflow Pipelines v2 backend; starts one run or a cron schedule."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from typing import Optional, Tuple

import yaml

DEFAULT_EXPERIMENT = "tfx-finetune"


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


def load_pipeline_job(package: str) -> dict:
    """Reads the PipelineJob JSON written by `finetune compile`.

    Raises:
      SubmitError: when the file is missing or is not a compiled PipelineJob.
    """
    try:
        with open(package, encoding="utf-8") as f:
            job = json.load(f)
    except OSError as e:
        raise SubmitError(f"cannot read {package}: {e.strerror}; run `finetune compile --output "
                          f"{package}` first") from e
    except json.JSONDecodeError as e:
        raise SubmitError(f"{package} is not JSON ({e}); pass the file `finetune compile` "
                          "wrote") from e
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise SubmitError(f"{package} has no pipelineSpec: pass the PipelineJob JSON that "
                          "`finetune compile` wrote")
    return job


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


def _write_spec_yaml(job: dict, path: str) -> str:
    """Writes the PipelineSpec (what the KFP API accepts) and returns the pipeline root.

    The pipeline root chosen at compile time becomes the spec's default, so runs started from
    the KFP UI write to the same bucket.
    """
    spec = dict(job["pipelineSpec"])
    pipeline_root = job.get("runtimeConfig", {}).get("gcsOutputDirectory", "")
    if pipeline_root:
        spec.setdefault("defaultPipelineRoot", pipeline_root)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=True)
    return pipeline_root


def _upload(client, spec_path: str, name: str) -> Tuple[str, str]:
    """Uploads the spec as a new pipeline, or as a new version of the pipeline named `name`."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(spec_path, pipeline_name=name).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1,
                                                 sort_by="created_at desc").pipeline_versions
        if not versions:
            raise SubmitError(f"the backend created pipeline {pipeline_id} without a version; "
                              "check the KFP API server's log")
        return pipeline_id, versions[0].pipeline_version_id
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    version = client.upload_pipeline_version(spec_path, f"{name} {stamp}", pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


def submit(package: str, host: Optional[str] = None, experiment: str = DEFAULT_EXPERIMENT,
           run_name: Optional[str] = None, schedule: Optional[str] = None,
           client=None) -> Submission:
    """Uploads the compiled pipeline and starts it once, or on `schedule`.

    The pipeline is named after the spec's pipeline name; submitting again adds a version.

    Args:
      package: the PipelineJob JSON written by `finetune compile`.
      host: the KFP API endpoint, e.g. http://localhost:8080 after
        `kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`.
      experiment: experiment the run or recurring run belongs to (created if missing).
      run_name: display name of the run; defaults to the pipeline name and the time.
      schedule: a cron expression (see `kfp_cron`); creates a recurring run instead of a run.
        Scheduled runs never overlap and do not backfill missed times.
      client: a `kfp.Client`; built from `host` when None.

    Raises:
      SubmitError: on an unusable package or schedule.
    """
    job = load_pipeline_job(package)
    cron = kfp_cron(schedule) if schedule else None
    name = job["pipelineSpec"]["pipelineInfo"]["name"]
    if client is None:
        import kfp

        client = kfp.Client(host=host)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H-%M-%S")
    run_name = run_name or f"{name} {stamp}"
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = os.path.join(tmp, "pipeline.yaml")
        pipeline_root = _write_spec_yaml(job, spec_path)
        pipeline_id, version_id = _upload(client, spec_path, name)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    if cron:
        recurring = client.create_recurring_run(
            experiment_id=experiment_id, job_name=run_name, cron_expression=cron,
            pipeline_id=pipeline_id, version_id=version_id, pipeline_root=pipeline_root or None,
            max_concurrency=1, no_catchup=True)
        return Submission(pipeline_id, version_id, experiment_id,
                          recurring_run_id=recurring.recurring_run_id)
    run = client.run_pipeline(experiment_id=experiment_id, job_name=run_name,
                              pipeline_id=pipeline_id, version_id=version_id,
                              pipeline_root=pipeline_root or None)
    return Submission(pipeline_id, version_id, experiment_id, run_id=run.run_id)
