"""Models: classifier, extractor, training, metrics and the model artifact."""
