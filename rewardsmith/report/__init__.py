"""report.html: a self-contained, offline page built from the run directory alone."""

from rewardsmith.report.html_report import build_report, write_report

__all__ = ["build_report", "write_report"]
