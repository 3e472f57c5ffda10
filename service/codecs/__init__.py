"""Codecs: wire formats (JSON tensors, images) to numpy arrays and back."""
