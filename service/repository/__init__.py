"""The model repository, in TensorFlow Serving's roles: source (finds versions on disk),
loader (loads one version), manager (applies the version policy, hands out versions)."""
