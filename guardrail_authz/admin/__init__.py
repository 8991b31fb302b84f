"""The admin API: its gRPC service (generated code under v1/) and the CLI client."""
