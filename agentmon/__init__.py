"""Code shared by agent-exporter and alert-receiver: config loading, logging, common CLI flags."""

__version__ = "0.1.0"
