"""Container images, resource limits and Beam defaults of the Kubeflow compile, as plain values."""
from __future__ import annotations

import dataclasses

DEFAULT_IMAGE = "tfx-finetune:latest"
# Where kubeflow/Dockerfile puts the project (its WORKDIR): schemas/ and weights/ are there.
IMAGE_PROJECT_DIR = "/pipeline"
# Open-source KFP uses the type as the Kubernetes resource name; Vertex AI wants NVIDIA_TESLA_T4…
DEFAULT_GPU_TYPE = "nvidia.com/gpu"
# None: Beam's default DirectRunner inside the pod. Any Beam argument without
# --sdk_container_image/--setup_file/--extra_package makes TFX build a throw-away sdist of
# itself in every Beam pod, which a DirectRunner in our image does not need.
DEFAULT_BEAM_ARGS = ()


class CompileError(ValueError):
    """The compile request cannot produce a spec that runs on a cluster; the message says why."""


@dataclasses.dataclass(frozen=True)
class Resources:
    """Container limits of one component: CPUs, memory in GB, and optionally GPUs."""

    cpu: float
    memory_gb: float
    gpu_type: str = ""
    gpu_count: int = 0

    def to_proto(self):
        """The KFP `PipelineContainerSpec.ResourceSpec` that TFX copies into the executor.

        Raises:
          CompileError: on a non-positive limit, a negative GPU count, or GPUs without a type.
        """
        # Imported here so the CLI can show these defaults without loading kfp.
        from kfp.pipeline_spec import pipeline_spec_pb2

        container_spec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec
        resource_spec = container_spec.ResourceSpec
        if self.cpu <= 0 or self.memory_gb <= 0:
            raise CompileError(f"CPU ({self.cpu}) and memory ({self.memory_gb} GB) limits must "
                               "be greater than 0")
        if self.gpu_count < 0:
            raise CompileError(f"--gpu-count {self.gpu_count}: pass 0 (no GPU) or more")
        if self.gpu_count and not self.gpu_type:
            raise CompileError("a GPU count needs a GPU type: pass --gpu-type, e.g. "
                               f"{DEFAULT_GPU_TYPE} (Kubeflow) or NVIDIA_TESLA_T4 (Vertex AI)")
        spec = resource_spec(cpu_limit=self.cpu, memory_limit=self.memory_gb)
        if self.gpu_count:
            spec.accelerator.CopyFrom(resource_spec.AcceleratorConfig(
                type=self.gpu_type, count=self.gpu_count))
        return spec


DEFAULT_TRAINER_RESOURCES = Resources(cpu=8, memory_gb=32, gpu_type=DEFAULT_GPU_TYPE, gpu_count=1)
DEFAULT_COMPONENT_RESOURCES = Resources(cpu=2, memory_gb=8)
