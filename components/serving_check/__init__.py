"""Servability check before publishing: TF Serving request formats against the candidate."""
