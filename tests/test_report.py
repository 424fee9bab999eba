"""report.html and ``qsem compare``: what they contain, and that they render in a real browser.

The browser tests open the files in headless Chromium (Debian's ``chromium``
package, driven by Playwright without downloading any browser) and fail on a
broken image, a script error, a request leaving the file, or a missing section.
A deliberately broken report shows each of these checks can fail.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from qsem.cli import main
from qsem.report import load_run, render_report, write_comparison, write_report
from qsem.runner import Experiment, RunContext, run_experiment

REPORT_SECTIONS = ("summary", "config", "figures", "tables", "run-info")
REPORT_ORDER = ("summary", "figures", "tables", "config", "run-info")
COMPARE_SECTIONS = ("runs", "config", "metrics", "figures")


@dataclass(frozen=True)
class LineConfig:
    seed: int = 0
    steps: int = 6
    slope: float = 2.0


def _line_run(cfg: LineConfig, ctx: RunContext) -> dict[str, Any]:
    """y = slope * x for a few steps: a summary, scalars, a table and two figures."""
    rows = []
    for step in range(1, cfg.steps + 1):
        ctx.log(step, y=cfg.slope * step)
        rows.append({"x": step, "y": cfg.slope * step, "label": f"p{step}"})
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([r["x"] for r in rows], [r["y"] for r in rows])
    ctx.save_figure(fig, "line.png")
    plt.close(fig)
    return {
        "summary": [f"the slope is {cfg.slope}", "second headline line"],
        "final_y": cfg.slope * cfg.steps,
        "n_points": cfg.steps,
        "points": rows,
        "by_kind": {"even": [r for r in rows if r["x"] % 2 == 0]},
        "fit": {"slope": cfg.slope, "intercept": 0.0},
    }


LINE = Experiment("line", "a straight line", LineConfig(), _line_run)


def _run(tmp_path: Path, name: str = "run", **kw: Any) -> Path:
    out = tmp_path / name
    run_experiment(LINE, out=out, quiet=True, **kw)
    return out


def test_report_has_every_part(tmp_path: Path) -> None:
    out = _run(tmp_path)
    html = (out / "report.html").read_text(encoding="utf-8")
    for section in REPORT_SECTIONS:
        assert f'<section id="{section}">' in html
    assert "the slope is 2.0" in html and "second headline line" in html
    assert "final_y" in html and "<h3>points</h3>" in html and "<h3>by_kind.even</h3>" in html
    assert "<h3>fit</h3>" in html and "<td>intercept</td><td>0</td>" in html.replace("\n", "")
    assert (
        html.count('src="data:image/png;base64,') == 1 and "<figcaption>line</figcaption>" in html
    )
    assert "slope" in html and "completed" in html and "torch" in html  # config, status, versions
    # self-contained: no script, no stylesheet link, no remote URL
    assert "<script" not in html and "<link" not in html and "http://" not in html
    assert "https://" not in html


def test_report_puts_what_was_found_before_the_config(tmp_path: Path) -> None:
    # order: summary, figures, tables, config, run info; the experiment's own
    # overview figure (named after it: line.png) comes before the others, which
    # keep their path order (sorted, "a_detail" would otherwise come first)
    out = _run(tmp_path)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1])
    fig.savefig(out / "a_detail.png")
    fig.savefig(out / "zz_detail.png")
    plt.close(fig)
    html = write_report(out).read_text(encoding="utf-8")
    at = [html.index(f'<section id="{s}">') for s in REPORT_ORDER]
    assert at == sorted(at)
    captions = [c.split("<")[0] for c in html.split("<figcaption>")[1:]]
    assert captions == [LINE.name, "a_detail", "zz_detail"]


def test_report_of_a_failed_run_shows_what_exists(tmp_path: Path) -> None:
    def broken(cfg: LineConfig, ctx: RunContext) -> dict[str, Any]:
        ctx.log(1, y=1.0)
        raise RuntimeError("it broke")

    out = tmp_path / "failed"
    with pytest.raises(RuntimeError):
        run_experiment(Experiment("line", "d", LineConfig(), broken), out=out, quiet=True)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "failed" in html and "RuntimeError: it broke" in html and "No results.json" in html


def test_qsem_report_rebuilds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(tmp_path)
    (out / "report.html").unlink()
    (out / "plots").mkdir()
    (out / "plots" / "extra.png").write_bytes((out / "line.png").read_bytes())
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<figcaption>line</figcaption>" in html and "<figcaption>extra</figcaption>" in html
    assert capsys.readouterr().out.strip() == str(out / "report.html")


def test_qsem_report_refuses_a_non_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err and "Traceback" not in err


def test_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _run(tmp_path, "a")
    b = _run(tmp_path, "b", overrides=["slope=3.0"], seed=5)
    target = tmp_path / "cmp.html"
    assert main(["compare", str(a), str(b), "--out", str(target)]) == 0
    html = target.read_text(encoding="utf-8")
    for section in COMPARE_SECTIONS:
        assert f'<section id="{section}">' in html
    # the differing keys, each with both values; the equal key 'steps' is not listed
    assert "<td>slope</td><td>2</td><td>3</td>" in html.replace("\n", "")
    assert "<td>seed</td><td>0</td><td>5</td>" in html.replace("\n", "")
    assert "<td>steps</td>" not in html
    assert "<td>final_y</td><td>12</td><td>18</td>" in html.replace("\n", "")
    assert html.count('src="data:image/png;base64,') == 2
    assert main(["compare", str(a)]) == 2  # a usage error
    assert "two or more run directories" in capsys.readouterr().err


# --------------------------------------------------------------------------
# headless Chromium
# --------------------------------------------------------------------------

CHROMIUM = os.environ.get("QSEM_CHROMIUM") or shutil.which("chromium") or ""
HOW_TO_INSTALL = (
    "headless Chromium not found: install Debian's package with "
    "'sudo apt-get install -y chromium' (or set QSEM_CHROMIUM=/path/to/chromium); "
    ".ci/run installs it before 'make test'"
)


def browser_problems(html_file: Path, sections: tuple[str, ...]) -> list[str]:
    """Open ``html_file`` in headless Chromium; list broken images, script errors,
    console errors, requests leaving the file and missing sections."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
    )
    if not CHROMIUM:
        pytest.skip(HOW_TO_INSTALL)
    problems: list[str] = []
    url = html_file.resolve().as_uri()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
            page.on(
                "console",
                lambda msg: (
                    problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning")
                    else None
                ),
            )

            def route(r: Any) -> None:
                if r.request.url == url or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    problems.append(f"request leaves the file: {r.request.url}")
                    r.abort()

            page.route("**/*", route)
            page.goto(url, wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
            )
            problems += [
                f"broken image {alt!r}" for alt, done, width in images if not (done and width > 0)
            ]
            present = page.evaluate(
                "ids => ids.map(id => document.getElementById(id) !== null)", list(sections)
            )
            problems += [
                f"missing section #{s}" for s, ok in zip(sections, present, strict=True) if not ok
            ]
        finally:
            browser.close()
    return problems


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert browser_problems(out / "report.html", REPORT_SECTIONS) == []


def test_comparison_renders_in_chromium(tmp_path: Path) -> None:
    target = write_comparison(
        [_run(tmp_path, "a"), _run(tmp_path, "b", seed=3)], tmp_path / "c.html"
    )
    assert browser_problems(target, COMPARE_SECTIONS) == []


def test_chromium_check_catches_a_broken_report(tmp_path: Path) -> None:
    out = _run(tmp_path)
    (out / "line.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")  # a broken image
    html = render_report(load_run(out))
    html = html.replace('<section id="tables">', '<section id="tablez">')  # a missing section
    html = html.replace(
        "</body>", "<script>undefined_function();</script></body>"
    )  # a script error
    html = html.replace("</body>", '<img alt="remote" src="http://example.invalid/x.png"></body>')
    broken = tmp_path / "broken.html"
    broken.write_text(html, encoding="utf-8")
    problems = browser_problems(broken, REPORT_SECTIONS)
    assert any(p == "broken image 'line'" for p in problems), problems
    assert any(p == "missing section #tables" for p in problems), problems
    assert any(p.startswith("script error:") and "undefined_function" in p for p in problems), (
        problems
    )
    assert any(p == "request leaves the file: http://example.invalid/x.png" for p in problems), (
        problems
    )
    assert write_report(out).exists()  # the real writer still works on the same directory
    assert json.loads((out / "run_info.json").read_text())["status"] == "completed"
