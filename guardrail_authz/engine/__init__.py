"""Request evaluation: a pure function from (snapshot, request) to a decision."""
