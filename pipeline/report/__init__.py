"""The HTML report of a run: summary table, figures and the completeness numbers.

Modules: :mod:`~pipeline.report.figures` (matplotlib PNGs) and
:mod:`~pipeline.report.html` (``index.html`` + ``completeness.json``; the stage function
:func:`~pipeline.report.html.write_report` and its :class:`~pipeline.report.html.ReportConfig`).
"""
