"""Pusher that publishes complete, deduplicated versions to a TF Serving model base directory."""
