"""The HTML report of a run: summary table, figures and the completeness numbers."""
