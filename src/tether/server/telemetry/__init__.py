"""Telemetry: exactly-once ingest, latest values and time-range queries."""
