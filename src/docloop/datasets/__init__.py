"""Datasets: documents with their labels as training examples, splits and manifests."""
