"""docloop's Kubeflow Pipelines components: one folder each, thin glue into the docloop library."""
