"""The demo's report: one self-contained HTML page (``report/index.html``) with every figure inline.

The page shows, in this order: the targets of the demo against what it measured (met, missed, not
measured), the pictures (PNG files of the report folder, embedded as base64 so the page can be
mailed or opened anywhere), every figure of ``summary.json``, and the commands to reproduce the run
and to open its Scipion project. Standard library only; no Scipion import.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from cryomine_core.io.atomic import atomic_write_text

__all__ = ["TARGETS", "target_rows", "write_report"]

#: summary key -> (comparison, threshold, what it means); the demo's targets (issue 17)
TARGETS = {
    "segmentation_object_f1": (">=", 0.85, "segmentation: object F1 against the planted particles"),
    "classification_accuracy_extracted": (">=", 0.9, "classification accuracy on the extracted subtomograms"),
    "aligned_class_purity": (">=", 0.9, "purity of the class that is averaged"),
    "heldout_cluster_purity": (">=", 0.9, "subdivision: purity of the cluster of the complex left out of training"),
    "fsc_ratio_to_oracle": ("<=", 1.3, "average's FSC 0.5 resolution against the true map / the oracle average's"),
    "fraction_lost_at_edges": ("<=", 0.10, "planted particles lost at the tomogram edges"),
}


def _met(value, op: str, threshold: float) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value >= threshold if op == ">=" else value <= threshold


def target_rows(summary: dict) -> list[dict]:
    """One row per target: key, meaning, target (text), value (or None when not measured), met (True/False/None)."""
    rows = []
    for key, (op, threshold, meaning) in TARGETS.items():
        value = summary.get(key)
        rows.append({"key": key, "meaning": meaning, "target": f"{op} {threshold:g}", "value": value,
                     "met": _met(value, op, threshold)})
    return rows


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: left; }
.met { background: #d8f0d8; } .missed { background: #f6d5d5; } .none { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 520px; }
figure img { max-width: 520px; border: 1px solid #ccc; }
pre { background: #f4f4f4; padding: 0.7em; overflow-x: auto; }
"""


def write_report(report_dir: str | Path, summary: dict, figures: list[tuple[str, str]], commands: dict[str, str],
                 title: str = "CryoMine demo") -> Path:
    """Write ``report_dir/index.html``.

    Args:
        report_dir: the report folder (holds the PNG files named in ``figures``).
        summary: the demo's figures (``summary.json``); the keys of :data:`TARGETS` are checked.
        figures: ``(PNG file name in report_dir, caption)``; files that are missing are listed as such.
        commands: label -> shell command (reproduce the run, open the Scipion project).
    Returns the path of the page.
    """
    folder = Path(report_dir)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    note = summary.get("data_note")
    if note:
        parts.append(f"<p><b>{html.escape(str(note))}</b></p>")
    parts.append("<h2>Targets</h2><table><tr><th>figure</th><th>target</th><th>measured</th><th></th></tr>")
    for row in target_rows(summary):
        cls, word = {True: ("met", "met"), False: ("missed", "missed"), None: ("none", "not measured")}[row["met"]]
        value = "-" if row["value"] is None else html.escape(str(row["value"]))
        parts.append(f"<tr class='{cls}'><td>{html.escape(row['meaning'])}</td><td>{row['target']}</td>"
                     f"<td>{value}</td><td>{word}</td></tr>")
    parts.append("</table><h2>Pictures</h2>")
    missing = []
    for name, caption in figures:
        path = folder / name
        if not path.is_file():
            missing.append(name)
            continue
        parts.append(f"<figure>{_image(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    if missing:
        parts.append(f"<p>Not produced in this run: {html.escape(', '.join(missing))}</p>")
    parts.append("<h2>Every figure</h2><table><tr><th>key</th><th>value</th></tr>")
    for key, value in summary.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        parts.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(shown)}</td></tr>")
    parts.append("</table><h2>Commands</h2>")
    for label, command in commands.items():
        parts.append(f"<p>{html.escape(label)}</p><pre>{html.escape(command)}</pre>")
    parts.append("</body></html>")
    page = folder / "index.html"
    atomic_write_text(page, "\n".join(parts))
    return page
