"""The shipped judges and what they say about generated images: classifier accuracy and Fréchet distance by model
name (the evaluation classifiers of digits and shapes, the scene judge of mini-sd); the quality bars."""

from .scores import accuracy, features, frechet_distance, model_accuracy, reference_stats

__all__ = ["accuracy", "features", "frechet_distance", "model_accuracy", "reference_stats"]
