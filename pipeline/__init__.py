"""The orchestrator-agnostic side: the config, its checks, the one DAG, the local runner, ML
Metadata and the up-to-date check. Nothing here writes a report or prints: the local runner
hands its progress lines to the command that runs it."""
