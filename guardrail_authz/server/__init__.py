"""The gRPC ext_authz server, ops HTTP endpoint, live reload and metrics."""
