"""HTML report of a biomarker run (plots embedded as base64 PNG)."""

from genosae.report.html import (
    features_section_inputs,
    render_report,
    volcano_plot,
    write_html,
    write_report,
)

__all__ = ["features_section_inputs", "render_report", "volcano_plot", "write_html", "write_report"]
