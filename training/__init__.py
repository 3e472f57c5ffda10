"""Offline training: builds, evaluates and exports the lesson's models as versioned SavedModels."""


class TrainingError(Exception):
    """A problem the user can fix (bad data, bad folder, bad option): reported in one line."""
