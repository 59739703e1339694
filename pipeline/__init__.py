"""The orchestrator-agnostic side: the config, its checks, the one DAG, the local runner, ML
Metadata and the up-to-date check. Nothing here formats output for a person."""
