"""One-question experiments whose answers are recorded in docs/lab-log.md."""
