"""Payload guardrails: request bodies, schemas, injection detectors and action extractors."""
