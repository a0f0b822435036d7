"""Sinks: where records go (JSON Lines and console log, webhooks), with the per-sink privacy policy."""
