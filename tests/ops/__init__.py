"""Production readiness checks: faults, fuzzing, security, load and malformed extracts."""
