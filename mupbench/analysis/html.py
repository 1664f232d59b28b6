"""One self-contained ``report.html``: every figure embedded as a base64 PNG, every table inline,
no file or network it depends on."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; line-height: 1.4 }
h1 { font-size: 1.6em } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top }
th { background: #f3f3f3 } tr:nth-child(even) td { background: #fafafa }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 }
.verdict { margin: 0.2em 0 } .muted { color: #666 } code { background: #f3f3f3; padding: 0 0.2em }
"""


def figure_png(fig: Figure, dpi: int = 110) -> str:
    """The figure as a base64 PNG ``data:`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def table_html(df: pd.DataFrame) -> str:
    """A frame of strings as an HTML table (escaped)."""
    return df.to_html(index=False, border=0, escape=True, na_rep="—")


class Page:
    """An HTML page built section by section."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{attr}>{html.escape(text)}</p>")

    def items(self, lines: list[str], cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.parts.append("<ul>" + "".join(f"<li{attr}>{html.escape(x)}</li>" for x in lines) + "</ul>")

    def table(self, df: pd.DataFrame) -> None:
        self.parts.append(table_html(df))

    def _embed(self, name: str, uri: str) -> None:
        self.parts.append(f'<figure><img alt="{html.escape(name)}" src="{uri}">'
                          f"<figcaption class=\"muted\">{html.escape(name)}</figcaption></figure>")

    def figure(self, name: str, fig: Figure) -> None:
        self._embed(name, figure_png(fig))

    def image(self, name: str, png: Path) -> None:
        """A PNG file already written, embedded (the page still depends on no file)."""
        self._embed(name, "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii"))

    def render(self) -> str:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p class=\"muted\">written {stamp}</p>"
                + "\n".join(self.parts) + "</body></html>\n")
