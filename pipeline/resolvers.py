"""Resolver strategies that never hand a run its own candidate as the thing to compare with.

TFX's canned strategies resolve "the latest blessed model" and "the latest artifact". After a
run has blessed its model (or accepted its data), an unchanged re-run would get that very
artifact back as its baseline: the Evaluator's (or the data gate's) inputs then differ from the
first run's, so it runs again only to compare the candidate with itself. These strategies take
the run's candidate as an extra input and skip it, so an unchanged re-run resolves exactly what
the first run resolved and every component is served from the cache.

Kubeflow Pipelines v2 compiles only the canned strategies, so the Kubeflow build of the
pipeline uses those (`create_pipeline(..., exclude_candidates=False)`).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)

import ml_metadata as mlmd

from components.data_gate.component import SOURCE_STATISTICS_ID

CANDIDATE = "candidate"
# Logged (INFO) when there is nothing earlier to compare with; the local runner shows it.
NOTHING_EARLIER_LOG = "%s: nothing earlier to compare with (first run)"


def _candidate_ids(input_dict: Dict[str, List[types.Artifact]]) -> set:
    return {artifact.id for artifact in input_dict.get(CANDIDATE, [])}


class PreviousBlessedModelStrategy(resolver.ResolverStrategy):
    """The latest blessed Model other than the candidate.

    Inputs: `candidate` (this run's Trainer model), `model` and `model_blessing` (all of them).
    Outputs `model` and `model_blessing`, both empty when no other model was ever blessed (and
    `candidate` unchanged: TFX expects every input key back).
    """

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        excluded = _candidate_ids(input_dict)
        others = {"model": [m for m in input_dict["model"] if m.id not in excluded],
                  "model_blessing": input_dict["model_blessing"]}
        result = LatestBlessedModelStrategy().resolve_artifacts(store, others)
        if not result["model"]:
            logging.info(NOTHING_EARLIER_LOG, "baseline model")
        return {CANDIDATE: input_dict.get(CANDIDATE, []), **result}


class PreviousAcceptedStatisticsStrategy(resolver.ResolverStrategy):
    """The latest statistics the DataGate accepted, other than the candidate's.

    Inputs: `candidate` (this run's StatisticsGen output) and `statistics` (every
    `accepted_statistics` of the DataGate). Outputs `statistics`: the newest accepted artifact
    whose source is not the candidate, or nothing (and `candidate` unchanged).
    """

    def resolve_artifacts(self, store: mlmd.MetadataStore,
                          input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        excluded = _candidate_ids(input_dict)
        others = [s for s in input_dict["statistics"]
                  if s.get_int_custom_property(SOURCE_STATISTICS_ID) not in excluded]
        if not others:
            logging.info(NOTHING_EARLIER_LOG, "previous accepted statistics")
        return {CANDIDATE: input_dict.get(CANDIDATE, []),
                "statistics": [max(others, key=lambda s: s.id)] if others else []}
