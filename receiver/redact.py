"""Re-export of :mod:`agentmon.redact` (the exporter and the config loader use it too)."""

from agentmon.redact import REDACTED, redact_options, redact_text, redact_url

__all__ = ["REDACTED", "redact_options", "redact_text", "redact_url"]
