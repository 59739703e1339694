"""The orchestrator-agnostic side: the config, the one DAG, the local runner and the CLI."""
