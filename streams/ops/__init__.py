"""Operating the server: listener limits, supervision of long-lived tasks, loop lag and memory, live figures (snapshots) and Prometheus metrics."""
