"""The report page: what it shows (plain dataclasses) and its HTML (one file, nothing external).

:mod:`unisp.eval.report` gathers a :class:`Page` from a run folder; :func:`render_html` turns it
into one self-contained HTML document: images as base64 PNG data URIs, plots as inline SVG
(:mod:`unisp.eval.plots`), a few lines of inline CSS and JavaScript (the comparison slider and a
self-check). The self-check runs when the page has loaded: it checks that every image has pixels and every plot
has drawn, and writes the outcome on ``<body>`` — ``data-ok="1"`` (or ``"0"``), ``data-images``,
``data-plots`` — with any script error or broken image listed in ``<pre id="page-errors">``.
Tests open the page in headless Chromium and read those attributes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import torch

from unisp.fileio import encode_image, quantize


@dataclass
class CropSet:
    """One scene's crops, all of the same window, with a thumbnail that shows where it is.

    Attributes:
        name: the scene (usually the RAW file's stem).
        panels: label → ``(h, w, 3)`` uint8 crop, in display order.
        thumb: ``(th, tw, 3)`` uint8 thumbnail of the whole frame.
        box: the crop window as fractions of the frame: ``(left, top, width, height)``.
        size: the full frame's ``(width, height)`` in pixels.
        origin: the crop's top-left corner ``(x, y)`` in full-frame pixels.
    """

    name: str
    panels: dict[str, np.ndarray]
    thumb: np.ndarray
    box: tuple[float, float, float, float]
    size: tuple[int, int]
    origin: tuple[int, int]


@dataclass
class Table:
    """A titled table of already formatted cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class ExportEntry:
    """An exported model file found in the folder and its parity report (``<file>.parity.json``)."""

    path: str
    size: int
    parity: dict | None


@dataclass
class ModelCard:
    """What a model file is: architecture, size, cost, provenance; and its exported files."""

    title: str
    fields: list[tuple[str, str]]
    exports: list[ExportEntry] = field(default_factory=list)


@dataclass
class Page:
    """Everything the report shows, section by section (an empty section is left out)."""

    title: str
    folder: str
    kind: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    crops: list[tuple[str, str, list[CropSet]]] = field(default_factory=list)  # (heading, note, crop sets)
    tables: list[Table] = field(default_factory=list)
    charts: list[tuple[str, list[str]]] = field(default_factory=list)  # (heading, SVG charts)
    cards: list[ModelCard] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def png_data_uri(image: np.ndarray | torch.Tensor) -> str:
    """A ``data:image/png;base64,…`` URI of an ``(H, W, 3)`` uint8 array or a ``(3, H, W)`` float image in [0, 1]."""
    pixels = image if isinstance(image, np.ndarray) and image.dtype == np.uint8 else quantize(image, 8)
    return "data:image/png;base64," + base64.b64encode(encode_image(pixels, ".png")).decode("ascii")


CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#d9dde5; --bg:#f6f7f9; --accent:#2f6db5; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1f2a3c; color:#fff; padding:18px 28px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; }
header .sub { color:#c6cfdd; font-size:13px; word-break:break-all; }
main { max-width:1440px; margin:0 auto; padding:8px 28px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:14px 18px; margin:18px 0; }
h2 { font-size:17px; margin:0 0 10px; }
h3 { font-size:14px; margin:14px 0 6px; }
.note { color:var(--muted); font-size:13px; margin:4px 0 8px; }
table { border-collapse:collapse; margin:6px 0 10px; font-variant-numeric:tabular-nums; }
th, td { padding:4px 10px; border-bottom:1px solid var(--line); text-align:right; vertical-align:top; }
th:first-child, td:first-child { text-align:left; }
th { background:#eef1f5; font-weight:600; }
table.kv td { text-align:left; }
table.kv td:first-child { color:var(--muted); white-space:nowrap; }
.scene { border-top:1px solid var(--line); padding-top:10px; margin-top:10px; }
.scene:first-of-type { border-top:none; margin-top:0; }
.row { display:flex; flex-wrap:wrap; gap:10px; align-items:flex-start; }
figure { margin:0; }
figcaption { font-size:12px; color:var(--muted); text-align:center; margin-top:2px; }
.panel img { display:block; width:256px; height:auto; image-rendering:pixelated; border:1px solid var(--line); }
.thumb { position:relative; display:inline-block; }
.thumb img { display:block; width:180px; height:auto; border:1px solid var(--line); }
.thumb .box { position:absolute; border:2px solid #ff3b30; box-shadow:0 0 0 1px #fff; }
.compare { margin-top:10px; }
.compare .view { position:relative; display:inline-block; cursor:ew-resize; user-select:none; }
.compare .view img { display:block; width:512px; height:auto; image-rendering:pixelated; }
.compare .view img.over { position:absolute; left:0; top:0; }
.compare .divider { position:absolute; top:0; bottom:0; width:2px; background:#fff; box-shadow:0 0 2px #000; pointer-events:none; }
.compare .tag { position:absolute; top:6px; background:rgba(0,0,0,.6); color:#fff; font-size:12px; padding:1px 6px; border-radius:3px; pointer-events:none; }
.compare .tag.l { left:6px; } .compare .tag.r { right:6px; }
.controls { display:flex; gap:8px; align-items:center; margin:6px 0; font-size:13px; }
.controls input[type=range] { width:260px; }
.charts { display:flex; flex-wrap:wrap; gap:12px; }
svg.plot { background:#fff; border:1px solid var(--line); border-radius:4px; }
svg.plot text { font-size:11px; fill:var(--fg); }
svg.plot .plot-title { font-size:13px; font-weight:600; }
svg.plot .grid { stroke:#e6e9ef; }
svg.plot .frame { fill:none; stroke:#9aa3b2; }
svg.plot .series { stroke-width:1.6; }
svg.plot .plot-empty { fill:var(--muted); }
pre { white-space:pre-wrap; word-break:break-all; font-size:12px; background:#f3f4f7; padding:6px 8px; }
#page-errors:empty { display:none; }
#page-errors { color:#b00020; }
.pass { color:#1e7b34; } .fail { color:#b00020; }
"""

#: The slider (drag or arrow keys to move the divider; the selects choose each side; swap) and the
#: self-check described in the module docstring.
SCRIPT = """
(function () {
  var errors = [];
  function fail(msg) { errors.push(String(msg)); }
  window.addEventListener('error', function (e) {
    var t = e.target;
    fail(t && t.tagName ? ('cannot load ' + t.tagName.toLowerCase()) : (e.message + ' at line ' + e.lineno));
  }, true);
  function setupCompare(c) {
    var under = c.querySelector('img.under'), over = c.querySelector('img.over');
    var left = c.querySelector('select.left'), right = c.querySelector('select.right');
    var range = c.querySelector('input[type=range]'), divider = c.querySelector('.divider');
    var tagL = c.querySelector('.tag.l'), tagR = c.querySelector('.tag.r');
    function pick(select) { return document.getElementById(select.value); }
    function show() {
      var a = pick(left), b = pick(right);
      over.src = a.src; under.src = b.src;
      tagL.textContent = a.getAttribute('data-label'); tagR.textContent = b.getAttribute('data-label');
      var v = Number(range.value);
      over.style.clipPath = 'inset(0 ' + (100 - v) + '% 0 0)';
      divider.style.left = v + '%';
    }
    left.addEventListener('change', show); right.addEventListener('change', show);
    range.addEventListener('input', show);
    c.querySelector('button.swap').addEventListener('click', function () {
      var t = left.value; left.value = right.value; right.value = t; show();
    });
    var view = c.querySelector('.view');
    function drag(e) {
      if (e.buttons !== 1 && e.type !== 'click') return;
      var r = view.getBoundingClientRect();
      range.value = Math.max(0, Math.min(100, 100 * (e.clientX - r.left) / r.width)); show();
    }
    view.addEventListener('mousemove', drag); view.addEventListener('click', drag);
    show();
  }
  function check() {
    // At the load event every image (the slider's too, set at DOMContentLoaded) has loaded or failed.
    var imgs = Array.prototype.slice.call(document.images);
    imgs.forEach(function (img) {
      if (!(img.complete && img.naturalWidth > 0)) fail('image does not render: ' + img.alt);
    });
    var plots = document.querySelectorAll('svg.plot');
    Array.prototype.forEach.call(plots, function (svg) {
      var box = svg.getBoundingClientRect(), n = Number(svg.getAttribute('data-points'));
      var name = svg.querySelector('title').textContent;
      if (!(box.width > 0 && box.height > 0)) fail('plot not laid out: ' + name);
      if (n > 0 && !svg.querySelector('polyline, circle')) fail('plot without lines: ' + name);
    });
    var b = document.body;
    b.setAttribute('data-images', String(imgs.length));
    b.setAttribute('data-plots', String(plots.length));
    document.getElementById('page-errors').textContent = errors.join('\\n');
    b.setAttribute('data-ok', errors.length ? '0' : '1');
  }
  document.addEventListener('DOMContentLoaded', function () {
    try { Array.prototype.forEach.call(document.querySelectorAll('.compare'), setupCompare); }
    catch (e) { fail(e.message); }
  });
  window.addEventListener('load', check);
})();
"""


def render_html(page: Page) -> str:
    """The whole report as one HTML document (UTF-8, no external references)."""
    body = [
        f"<header><h1>{escape(page.title)}</h1><div class=\"sub\">{escape(page.kind)} · {escape(page.folder)}</div></header>",
        "<main>",
        '<pre id="page-errors"></pre>',
    ]
    if page.facts:
        body.append(f"<section><h2>Run</h2>{_kv_table(page.facts)}</section>")
    if page.tables:
        body.append("<section><h2>Metrics</h2>" + "".join(_table(t) for t in page.tables) + "</section>")
    for index, (heading, note, crop_sets) in enumerate(page.crops):
        body.append(_crop_section(heading, note, crop_sets, f"s{index}"))
    for heading, charts in page.charts:
        body.append(f'<section><h2>{escape(heading)}</h2><div class="charts">{"".join(charts)}</div></section>')
    for card in page.cards:
        body.append(_card(card))
    if page.notes:
        items = "".join(f"<li>{escape(n)}</li>" for n in page.notes)
        body.append(f"<section><h2>What was read and what was assumed</h2><ul class=\"note\">{items}</ul></section>")
    body.append("</main>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(page.title)}</title><style>{CSS}</style><script>{SCRIPT}</script></head>"
        f"<body data-ok=\"pending\">{''.join(body)}</body></html>\n"
    )


def _kv_table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{cells}</table>'


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return f"<h3>{escape(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


def _crop_section(heading: str, note: str, crop_sets: list[CropSet], prefix: str) -> str:
    parts = [f"<section><h2>{escape(heading)}</h2>"]
    if note:
        parts.append(f'<p class="note">{escape(note)}</p>')
    for i, crop in enumerate(crop_sets):
        parts.append(_scene(crop, f"{prefix}-{i}"))
    parts.append("</section>")
    return "".join(parts)


def _scene(crop: CropSet, key: str) -> str:
    left, top, width, height = (100 * v for v in crop.box)
    (w, h), (x, y) = crop.size, crop.origin
    ch, cw = next(iter(crop.panels.values())).shape[:2]
    figures = [
        f'<figure><div class="thumb"><img src="{png_data_uri(crop.thumb)}" alt="{escape(crop.name)} (whole frame)">'
        f'<div class="box" style="left:{left:.2f}%;top:{top:.2f}%;width:{width:.2f}%;height:{height:.2f}%"></div></div>'
        f"<figcaption>whole frame {w}×{h}, crop at ({x}, {y})</figcaption></figure>"
    ]
    ids = []
    for j, (label, pixels) in enumerate(crop.panels.items()):
        pid = f"{key}-p{j}"
        ids.append((pid, label))
        figures.append(
            f'<figure class="panel"><img id="{pid}" data-label="{escape(label)}" src="{png_data_uri(pixels)}" '
            f'alt="{escape(crop.name)}: {escape(label)}"><figcaption>{escape(label)}</figcaption></figure>'
        )
    parts = [f'<div class="scene"><h3>{escape(crop.name)} <span class="note">({cw}×{ch} crop, 1:1 pixels)</span></h3>']
    parts.append(f'<div class="row">{"".join(figures)}</div>')
    if len(ids) >= 2:
        # Default comparison: the first panel (classical) on the left against the second (the model).
        def options(selected: int) -> str:
            return "".join(
                f'<option value="{pid}"{" selected" if n == selected else ""}>{escape(label)}</option>'
                for n, (pid, label) in enumerate(ids)
            )

        parts.append(
            '<div class="compare"><div class="controls">left <select class="left">'
            f'{options(0)}</select> right <select class="right">{options(1)}</select>'
            '<input type="range" min="0" max="100" value="50" aria-label="divider position">'
            '<button type="button" class="swap">swap</button><span class="note">drag on the image to move the divider (2× zoom)</span></div>'
            f'<div class="view"><img class="under" alt="{escape(crop.name)}: right side">'
            f'<img class="over" alt="{escape(crop.name)}: left side"><div class="divider"></div>'
            '<span class="tag l"></span><span class="tag r"></span></div></div>'
        )
    parts.append("</div>")
    return "".join(parts)


def _card(card: ModelCard) -> str:
    parts = [f"<section><h2>{escape(card.title)}</h2>{_kv_table(card.fields)}"]
    if card.exports:
        parts.append("<h3>Exported files</h3>")
        for entry in card.exports:
            parts.append(f"<p><b>{escape(entry.path)}</b> ({entry.size:,} bytes)</p>")
            if entry.parity is None:
                parts.append(f'<p class="note">no parity report ({escape(Path(entry.path).name)}.parity.json not found)</p>')
            else:
                parts.append(_parity(entry.parity))
    else:
        parts.append('<p class="note">No exported files (.onnx, .tflite) in this folder.</p>')
    parts.append("</section>")
    return "".join(parts)


def _parity(report: dict) -> str:
    """A parity report (:meth:`unisp.export.parity.ParityReport.to_json`, or any JSON object):
    its scalar fields as a key/value table, each list of objects (the per-sample ``rows``) as a table."""
    scalars = [(k, v) for k, v in flatten(report) if not _is_records(v)]
    verdict = report.get("passed")
    html = ""
    if isinstance(verdict, bool):
        html += f'<p><b class="{"pass" if verdict else "fail"}">parity {"passed" if verdict else "FAILED"}</b></p>'
    html += _kv_table([(k, _cell(v, k)) for k, v in scalars])
    for key, records in ((k, v) for k, v in flatten(report) if _is_records(v)):
        columns = list(dict.fromkeys(c for r in records for c in r))
        html += _table(Table(title="per sample" if key == "rows" else key, header=columns, rows=[[_cell(r.get(c, ""), c) for c in columns] for r in records]))
    return html


def _is_records(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def flatten(record: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dicts as ``("a.b.c", value)`` pairs, in order (lists stay values)."""
    out: list[tuple[str, object]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _cell(value: object, key: str = "") -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if value is None:  # parity reports write an infinite PSNR (bit-identical outputs) as null
        return "inf (identical outputs)" if "psnr" in key else "–"
    return str(value)
