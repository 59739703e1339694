"""Driver of the DataGate: puts the previous accepted statistics into the cache key."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx import types

from tfx_finetune.components import published
from tfx_finetune.components.data_gate import executor


class PreviousStatisticsDriver(published.WorkspaceDriver):
    """Finds the statistics the DataGate accepted last, other than this run's."""

    EXEC_PROPERTY = executor.PREVIOUS_STATISTICS_KEY

    def lookup(self, input_dict: Dict[str, List[types.Artifact]],
               exec_properties: Dict[str, Any]) -> Optional[str]:
        return published.previous_statistics(
            exec_properties[executor.ACCEPTED_STATISTICS_DIR_KEY],
            input_dict[executor.STATISTICS_KEY][0].uri)
