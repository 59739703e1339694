"""The atomic Pusher component: stock Pusher interface, publishing with our executor."""
from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from tfx_finetune.components.atomic_pusher import executor


class AtomicPusher(Pusher):
    """Publishes blessed models to `<base_directory>/<version>/` completely, once per content.

    Takes the stock Pusher's arguments; `custom_config={"keep_versions": K}` keeps only the
    newest K versions.
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
