"""The deploy-kserve component."""

from components.deploy_kserve.component import deploy_kserve

__all__ = ["deploy_kserve"]
