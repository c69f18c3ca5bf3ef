"""Health of a running orc: readiness checks and the Prometheus exposition."""
