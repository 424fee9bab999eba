"""Self-contained HTML reports of run directories.

* :func:`write_report` — ``report.html`` of one run (the runner writes it at the
  end of every run; ``qsem report DIR`` rebuilds it);
* :func:`write_comparison` — one HTML file putting several runs side by side
  (``qsem compare DIR... --out FILE``): config differences, scalar results and
  figures.

An experiment makes its report good by putting its headline lines in
``results["summary"]`` (a list of strings), its tables as lists of flat dicts in
its results, and its plots as PNGs via ``ctx.save_figure``.

>>> from qsem.report import write_report  # doctest: +SKIP
>>> write_report("runs/demo-20260101-120000")  # doctest: +SKIP
PosixPath('runs/demo-20260101-120000/report.html')
"""

from .collect import Figure, RunData, Table, flatten, load_run
from .render import (
    REPORT_FILE,
    render_comparison,
    render_report,
    write_comparison,
    write_report,
)

__all__ = [
    "REPORT_FILE", "Figure", "RunData", "Table", "flatten", "load_run", "render_comparison",
    "render_report", "write_comparison", "write_report",
]  # fmt: skip
