"""Checkpoint policy and the findings ledger (built with the consumer and the lifecycle issues)."""
