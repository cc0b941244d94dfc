"""Kafka wiring: topic administration and the streaming shell around the decision engine."""
