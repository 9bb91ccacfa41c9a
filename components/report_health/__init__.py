"""The report-health component."""

from components.report_health.component import report_health

__all__ = ["report_health"]
