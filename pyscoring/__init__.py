"""Train TensorFlow models on Flink and score them in Flink streaming jobs."""

__version__ = "0.1.0"
