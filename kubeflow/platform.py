"""The Kubernetes platform spec of the compiled pipeline: volumes in every pod, GPU scheduling.

On open-source Kubeflow Pipelines a pod has only what the platform spec asks for: the driver
applies each executor's `KubernetesExecutorConfig` (kubeflow/pipelines
`backend/src/v2/driver/k8s.go`) and otherwise turns an accelerator request into a resource
limit and nothing more (`driver/driver.go`). The spec is the second YAML document of the
uploaded package (`apiserver/template/v2_template.go`); its fields are those of
`kubernetes_platform/proto/kubernetes_executor_config.proto`, written here as plain dicts
(the kfp-kubernetes package that wraps them is not in the lock).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from tfx_finetune.kubeflow.resources import CompileError

# The taint GPU node pools carry outside GKE (NVIDIA GPU Operator, AKS, EKS guides), which the
# driver does not tolerate by itself: without it the Trainer stays Pending.
GPU_TAINT_KEY = "nvidia.com/gpu"
# Kubernetes names: a PVC name is a DNS subdomain (RFC 1123); label keys are an optional DNS
# prefix and a name of at most 63 characters; label values at most 63 characters.
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclasses.dataclass(frozen=True)
class Volume:
    """A PersistentVolumeClaim mounted at `mount_path` in every pod of the pipeline."""

    claim: str
    mount_path: str

    @classmethod
    def parse(cls, text: str) -> "Volume":
        """Reads `CLAIM:/mount/path` (the `--volume` flag).

        Raises:
          CompileError: when the claim is not a Kubernetes name or the path is not absolute.
        """
        claim, sep, path = text.partition(":")
        if not sep or not _CLAIM.match(claim) or not os.path.isabs(path):
            raise CompileError(
                f"--volume {text!r}: give CLAIM:/mount/path, the name of a "
                "PersistentVolumeClaim in the namespace the runs execute in (ReadWriteMany, "
                "since several pods mount it) and the absolute path the pods mount it at, "
                "e.g. --volume finetune-data:/mnt/data")
        return cls(claim, os.path.normpath(path))


@dataclasses.dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration (operator Exists when `value` is empty)."""

    key: str
    effect: str = "NoSchedule"
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> "Toleration":
        """Reads `KEY[=VALUE]:EFFECT` (kubectl taint's syntax; the `--gpu-toleration` flag).

        Raises:
          CompileError: on a malformed key, value or effect.
        """
        taint, _, effect = text.rpartition(":")
        key, _, value = taint.partition("=")
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value) \
                or effect not in TOLERATION_EFFECTS:
            raise CompileError(
                f"--gpu-toleration {text!r}: give the GPU nodes' taint as KEY[=VALUE]:EFFECT "
                f"(effect one of {', '.join(TOLERATION_EFFECTS)}), e.g. "
                f"{GPU_TAINT_KEY}:NoSchedule or nvidia.com/gpu=present:NoSchedule")
        return cls(key, effect, value)

    def to_dict(self) -> Dict[str, str]:
        """The `Toleration` message of the platform spec, as JSON."""
        if self.value:
            return {"key": self.key, "operator": "Equal", "value": self.value,
                    "effect": self.effect}
        return {"key": self.key, "operator": "Exists", "effect": self.effect}


DEFAULT_GPU_TOLERATIONS = (Toleration(GPU_TAINT_KEY),)


def parse_node_selector(pairs: Iterable[str]) -> Dict[str, str]:
    """Reads `KEY=VALUE` node labels (the `--gpu-node-selector` flag).

    Raises:
      CompileError: on a pair that is not a valid Kubernetes label.
    """
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise CompileError(
                f"--gpu-node-selector {pair!r}: give a node label of the GPU nodes as "
                "KEY=VALUE, e.g. nvidia.com/gpu.product=Tesla-T4 (GPU Operator) or "
                "cloud.google.com/gke-accelerator=nvidia-tesla-t4 (GKE)")
        labels[key] = value
    return labels


def mounted_paths(volumes: Sequence[Volume]) -> List[str]:
    """The directories the volumes make exist in every pod.

    Raises:
      CompileError: when two volumes share a mount path or a claim.
    """
    paths = [v.mount_path for v in volumes]
    claims = [v.claim for v in volumes]
    for values, what in ((paths, "mount path"), (claims, "claim")):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise CompileError(f"--volume: the {what} {repeated[0]!r} is given twice; "
                               "give each claim once, at one path")
    return paths


def platform_spec(executor_labels: Sequence[str], trainer_label: str,
                  volumes: Sequence[Volume], gpu_count: int,
                  gpu_tolerations: Sequence[Toleration] = DEFAULT_GPU_TOLERATIONS,
                  gpu_node_selector: Mapping[str, str] = ()) -> Dict:
    """The `PlatformSpec` document (`pipeline_spec.proto`) for the Kubernetes platform, or {}
    when the pods need nothing from it.

    Args:
      executor_labels: every container executor of the compiled spec.
      trainer_label: the Trainer's executor, which gets the GPU scheduling.
      volumes: mounted in every executor's pod.
      gpu_count: the Trainer's GPUs; with 0 it gets no tolerations or node selector.
      gpu_tolerations, gpu_node_selector: how the Trainer's pod reaches the GPU nodes.
    """
    executors: Dict[str, Dict] = {}
    for label in executor_labels:
        config: Dict = {}
        if volumes:
            config["pvcMount"] = [{"constant": v.claim, "mountPath": v.mount_path}
                                  for v in volumes]
        if label == trainer_label and gpu_count:
            if gpu_tolerations:
                config["tolerations"] = [t.to_dict() for t in gpu_tolerations]
            if gpu_node_selector:
                config["nodeSelector"] = {"labels": dict(gpu_node_selector)}
        if config:
            executors[label] = config
    if not executors:
        return {}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def describe(volumes: Sequence[Volume], gpu_count: int, tolerations: Sequence[Toleration],
             node_selector: Mapping[str, str]) -> Tuple[str, ...]:
    """One line per thing the platform spec asks of the cluster, for the compile's report."""
    lines = [f"volume {v.claim} at {v.mount_path} in every pod" for v in volumes]
    if gpu_count:
        if tolerations:
            lines.append("Trainer tolerates " + ", ".join(
                f"{t.key}{'=' + t.value if t.value else ''}:{t.effect}" for t in tolerations))
        if node_selector:
            lines.append("Trainer on nodes labelled " + ", ".join(
                f"{k}={v}" for k, v in node_selector.items()))
    return tuple(lines)
