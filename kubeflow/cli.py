"""The `compile` and `submit` subcommands of `finetune`, registered by `add_commands`."""
from __future__ import annotations

import argparse
import sys

# The handlers import TFX and kfp only when they run, so `finetune --help` stays fast.


def add_commands(subparsers) -> None:
    """Registers `compile` and `submit` on the `add_subparsers()` object of the `finetune` CLI.

    Each parser sets `func` to its handler, which returns the process exit code.
    """
    _add_compile_parser(subparsers)
    _add_submit_parser(subparsers)


def _add_compile_parser(subparsers) -> None:
    from tfx_finetune.kubeflow import resources, weights

    compile_parser = subparsers.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines v2 (Trainer on GPU nodes)")
    compile_parser.add_argument("--output", required=True, metavar="FILE.json",
                                help="where to write the PipelineJob JSON")
    compile_parser.add_argument("--pipeline-root", required=True, metavar="URI",
                                help="bucket the pods write artifacts to: minio://… (Kubeflow's "
                                     "default store), gs://… or s3://…")
    compile_parser.add_argument("--data", metavar="URI",
                                help="image folder root as the pods see it: gs://… or a path "
                                     "on a --volume (default: config's data_dir)")
    compile_parser.add_argument("--workspace", metavar="URI",
                                help="where the Pusher publishes (<workspace>/serving/"
                                     "<model_name>) and the runs keep what they accepted: gs://… "
                                     "or a path on a --volume (default: config's workspace)")
    compile_parser.add_argument("--volume", dest="volumes", action="append", default=[],
                                metavar="CLAIM:PATH",
                                help="mount this PersistentVolumeClaim at PATH in every pod "
                                     "(through the Kubernetes platform spec); data, workspace, "
                                     "weights and schema may then be paths under PATH; "
                                     "repeatable")
    compile_parser.add_argument("--config", metavar="FILE", help="YAML file of config fields")
    compile_parser.add_argument("--image", default=resources.DEFAULT_IMAGE,
                                help="image built from kubeflow/Dockerfile, for every component "
                                     "(default: %(default)s)")
    compile_parser.add_argument("--gpu-image", help="image of the Trainer (default: --image)")
    trainer = resources.DEFAULT_TRAINER_RESOURCES
    components = resources.DEFAULT_COMPONENT_RESOURCES
    _add_gpu_flags(compile_parser, trainer)
    compile_parser.add_argument("--weights-source", default=weights.FROM_IMAGE,
                                choices=weights.SOURCES,
                                help="for weights: imagenet, where the Trainer's pod gets "
                                     "them: image (baked by kubeflow/Dockerfile's PRETRAINED, "
                                     "no internet needed) or download (needs egress) "
                                     "(default: %(default)s)")
    compile_parser.add_argument("--trainer-cpu", type=float, default=trainer.cpu,
                                help="CPU limit of the Trainer (default: %(default)s)")
    compile_parser.add_argument("--trainer-memory", type=float, default=trainer.memory_gb,
                                metavar="GB", help="memory limit of the Trainer "
                                "(default: %(default)s)")
    compile_parser.add_argument("--cpu", type=float, default=components.cpu,
                                help="CPU limit of the other components (default: %(default)s)")
    compile_parser.add_argument("--memory", type=float, default=components.memory_gb,
                                metavar="GB", help="memory limit of the other components "
                                "(default: %(default)s)")
    compile_parser.add_argument("--beam-arg", dest="beam_args", action="append", metavar="ARG",
                                help="Beam pipeline argument of the data components, repeatable; "
                                     "write it with '=': --beam-arg=--direct_num_workers=8 "
                                     "(Beam's DirectRunner in the pod; runners whose workers run "
                                     "elsewhere are refused)")
    compile_parser.set_defaults(func=cmd_compile)


def _add_gpu_flags(parser, trainer) -> None:
    """The Trainer's GPUs and where Kubernetes may schedule it."""
    from tfx_finetune.kubeflow import platform

    parser.add_argument("--gpu-type", default=trainer.gpu_type,
                        help="accelerator type of the Trainer: the Kubernetes resource "
                             "name on Kubeflow, e.g. NVIDIA_TESLA_T4 on Vertex AI "
                             "(default: %(default)s)")
    parser.add_argument("--gpu-count", type=int, default=trainer.gpu_count,
                        help="GPUs of the Trainer; 0 trains on CPU (default: %(default)s)")
    parser.add_argument("--gpu-toleration", dest="gpu_tolerations", action="append",
                        metavar="KEY[=VALUE]:EFFECT",
                        help="a taint of the GPU nodes the Trainer tolerates, "
                             "repeatable (default: "
                             f"{platform.GPU_TAINT_KEY}:NoSchedule, the taint GPU node pools "
                             "commonly carry)")
    parser.add_argument("--gpu-node-selector", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a label the Trainer's node must have, e.g. "
                             "nvidia.com/gpu.product=Tesla-T4; repeatable")


def _add_submit_parser(subparsers) -> None:
    from tfx_finetune.kubeflow import submit as submit_defaults

    submit_parser = subparsers.add_parser(
        "submit", help="upload a compiled pipeline to Kubeflow Pipelines and run or schedule it")
    submit_parser.add_argument("--host", required=True, metavar="URL",
                               help="KFP API endpoint, e.g. http://localhost:8080")
    submit_parser.add_argument("--package", required=True, metavar="FILE.yaml",
                               help="the KFP package `finetune compile` wrote (the .yaml "
                                    "beside its --output)")
    submit_parser.add_argument("--experiment", default=submit_defaults.DEFAULT_EXPERIMENT,
                               help="experiment to run in, created if missing "
                                    "(default: %(default)s)")
    submit_parser.add_argument("--run-name", help="display name of the run or recurring run")
    submit_parser.add_argument("--schedule", metavar="CRON",
                               help="create a recurring run on this cron schedule, e.g. "
                                    "'0 3 * * 1' (Mondays 03:00) instead of a single run")
    submit_parser.add_argument("--namespace",
                               help="multi-user Kubeflow: your profile's namespace, where the "
                                    "pipeline, experiment and runs go (e.g. "
                                    "kubeflow-user-example-com)")
    submit_parser.add_argument("--user-id", metavar="USER",
                               help="multi-user Kubeflow: the user to act as (e.g. "
                                    "user@example.com), sent in the identity header; for a "
                                    "port-forward to the ml-pipeline service, which trusts it")
    submit_parser.add_argument("--user-id-header", default=submit_defaults.USER_ID_HEADER,
                               help="the identity header of the API server (default: "
                                    "%(default)s)")
    submit_parser.add_argument("--token-file", metavar="FILE",
                               help="multi-user Kubeflow: a service account token to send as "
                                    "a bearer token (default: $KF_PIPELINES_SA_TOKEN_PATH, or "
                                    f"{submit_defaults.IN_CLUSTER_TOKEN_PATH} in a Kubeflow "
                                    "pod, when it exists)")
    submit_parser.set_defaults(func=cmd_submit)


def _fail(message: str) -> int:
    print(f"finetune: {message}", file=sys.stderr)
    return 2


def cmd_compile(args: argparse.Namespace) -> int:
    """Compiles the pipeline to `args.output` (and the KFP package beside it); returns 0, or 2
    with a message on stderr."""
    from tfx_finetune.kubeflow import compile as compile_lib
    from tfx_finetune.kubeflow import platform, resources
    from tfx_finetune.pipeline import config as config_lib

    try:
        cluster = compile_lib.Cluster(
            volumes=tuple(platform.Volume.parse(v) for v in args.volumes),
            gpu_tolerations=tuple(platform.Toleration.parse(t) for t in args.gpu_tolerations)
            if args.gpu_tolerations else platform.DEFAULT_GPU_TOLERATIONS,
            gpu_node_selector=platform.parse_node_selector(args.gpu_node_selector),
            weights_source=args.weights_source)
        config = compile_lib.cluster_config(
            config_lib.make_config({"workspace": args.workspace}, config_file=args.config),
            data=args.data, cluster=cluster)
        compiled = compile_lib.compile_pipeline(
            config, args.output, args.pipeline_root, image=args.image, gpu_image=args.gpu_image,
            beam_args=args.beam_args or resources.DEFAULT_BEAM_ARGS,
            trainer_resources=resources.Resources(
                cpu=args.trainer_cpu, memory_gb=args.trainer_memory, gpu_type=args.gpu_type,
                gpu_count=args.gpu_count),
            component_resources=resources.Resources(cpu=args.cpu, memory_gb=args.memory),
            cluster=cluster)
    except (config_lib.ConfigError, resources.CompileError) as e:
        return _fail(str(e))
    for note in compiled.notes:
        print(f"  {note}")
    print(f"wrote {compiled.job_path} (Vertex AI) and {compiled.package_path} (Kubeflow "
          f"Pipelines): submit with `finetune submit --host URL --package "
          f"{compiled.package_path}`")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    """Uploads and runs (or schedules) `args.package`; returns 0, or 2 with a message."""
    import kfp_server_api
    import urllib3

    from tfx_finetune.kubeflow import submit as submit_lib

    try:
        done = submit_lib.submit(
            args.package, host=args.host, experiment=args.experiment, run_name=args.run_name,
            schedule=args.schedule, identity=submit_lib.Identity(
                namespace=args.namespace, user_id=args.user_id,
                user_id_header=args.user_id_header, token_file=args.token_file))
    except submit_lib.SubmitError as e:
        return _fail(str(e))
    except kfp_server_api.ApiException as e:
        return _fail(f"the KFP API at {args.host} answered {e.status} {e.reason}: {e.body}")
    except urllib3.exceptions.HTTPError as e:
        return _fail(f"cannot reach the KFP API at {args.host} ({e}); check --host, e.g. after "
                     "`kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80` use "
                     "http://localhost:8080")
    if done.recurring_run_id:
        print(f"recurring run {done.recurring_run_id} created (pipeline {done.pipeline_id}, "
              f"version {done.version_id}, experiment {done.experiment_id})")
    else:
        print(f"run {done.run_id} started (pipeline {done.pipeline_id}, version "
              f"{done.version_id}, experiment {done.experiment_id})")
    return 0
