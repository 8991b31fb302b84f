"""Caller identity beyond API keys: JWTs verified against JWKS."""
