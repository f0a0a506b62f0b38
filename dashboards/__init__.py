"""Grafana dashboards for agent-monitoring: dashboards/generate.py renders dashboards/*.json."""
