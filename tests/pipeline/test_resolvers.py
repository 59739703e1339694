"""The resolver strategies skip the run's own candidate (the end-to-end test runs them for real)."""
from tfx.types import standard_artifacts

from components.data_gate.component import SOURCE_STATISTICS_ID
from pipeline import resolvers


def _model(artifact_id):
    model = standard_artifacts.Model()
    model.id = artifact_id
    return model


def _blessing(model_id, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _accepted(artifact_id, source_id):
    statistics = standard_artifacts.ExampleStatistics()
    statistics.id = artifact_id
    statistics.set_int_custom_property(SOURCE_STATISTICS_ID, source_id)
    return statistics


def _baseline(candidate, models, blessings):
    result = resolvers.PreviousBlessedModelStrategy().resolve_artifacts(
        None, {"candidate": candidate, "model": models, "model_blessing": blessings})
    return [m.id for m in result["model"]]


def test_baseline_is_the_latest_blessed_model_other_than_the_candidate():
    models = [_model(1), _model(2), _model(3), _model(4)]
    blessings = [_blessing(1, True), _blessing(2, True), _blessing(3, False), _blessing(4, True)]
    assert _baseline([_model(4)], models, blessings) == [2]  # 3 was not blessed
    assert _baseline([_model(5)], models, blessings) == [4]  # a new model: the latest blessed
    assert _baseline([], models, blessings) == [4]


def test_a_candidate_that_is_the_only_blessed_model_has_no_baseline(caplog):
    caplog.set_level("INFO", logger="absl")
    assert _baseline([_model(1)], [_model(1)], [_blessing(1, True)]) == []
    assert "baseline model: nothing earlier to compare with" in caplog.text
    assert _baseline([_model(1)], [], []) == []


def _previous(candidate_id, accepted):
    candidate = standard_artifacts.ExampleStatistics()
    candidate.id = candidate_id
    result = resolvers.PreviousAcceptedStatisticsStrategy().resolve_artifacts(
        None, {"candidate": [candidate], "statistics": accepted})
    return [s.id for s in result["statistics"]]


def test_previous_statistics_skip_the_copies_of_the_candidate():
    accepted = [_accepted(10, source_id=1), _accepted(11, source_id=2), _accepted(12, source_id=2)]
    assert _previous(2, accepted) == [10]  # re-runs on the same data compare with older data
    assert _previous(3, accepted) == [12]  # new data compares with the latest accepted
    assert _previous(1, [_accepted(10, source_id=1)]) == []
