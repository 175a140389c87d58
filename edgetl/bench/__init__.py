"""Latency and accuracy measurement of artifacts through the Runner layer."""
