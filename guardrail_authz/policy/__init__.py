"""Policy files: load, validate and compile them into an immutable snapshot."""
