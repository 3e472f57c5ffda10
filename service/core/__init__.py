"""The transport-free data plane: lookup, validation, batching and inference."""
