"""E2EE benchmark workloads, runnable against any homeserver URL (`python -m benchmarks`)."""
