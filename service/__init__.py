"""HTTP model server for Keras/TensorFlow SavedModels."""
