"""docloop pipelines (bootstrap, retrain, drift_check) land here with the issues that build them."""
