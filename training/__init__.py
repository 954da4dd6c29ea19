"""The applications: training, and the data pipelines they read."""
