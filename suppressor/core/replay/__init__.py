"""Replay: event history through the very same engine, with no Kafka (SPEC section 7)."""
