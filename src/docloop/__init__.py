"""docloop: Kubeflow Pipelines components for self-improving document AI."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("docloop")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
