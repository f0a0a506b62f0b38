"""Prometheus recording/alerting rules: rules/generate.py renders them from rules/config.yml."""
