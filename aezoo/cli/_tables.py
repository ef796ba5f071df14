"""Tables that never cut what users type or read as a value.

Identifier and number columns (``ID``, ``NUMBER``) are never wrapped nor cut; text columns
(``TEXT``: descriptions, paths) wrap, folding a word longer than the column. When the
identifiers alone are wider than the terminal (or than 80 columns when piped), the table
is printed wider than the terminal rather than cut: the terminal wraps the lines, every
character is still there (``tests/test_cli.py::test_tables_never_cut_names_at_80_columns``).
"""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

ID, NUMBER, TEXT = "id", "number", "text"
_TEXT_MIN = 12  # the narrowest a wrapped text column gets before the table grows


def table(columns: list[tuple[str, str]], **options: Any) -> Table:
    """A rich Table with one column per ``(header, ID | NUMBER | TEXT)``."""
    out = Table(**options)
    for header, kind in columns:
        if kind == TEXT:
            out.add_column(header, overflow="fold", ratio=1)
        else:
            out.add_column(header, no_wrap=True, overflow="fold",
                           justify="right" if kind == NUMBER else "left")
    return out


def _plain(cell: Any, console: Console) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return console.render_str(cell).plain
    return ""


def needed_width(tab: Table, console: Console) -> int:
    """Columns the table needs so that no ID or NUMBER cell is cut."""
    total = tab._extra_width  # borders and edges
    for index, column in enumerate(tab.columns):
        cells = [str(column.header), *(_plain(c, console) for c in column._cells)]
        longest = max((cell_len(line) for c in cells for line in c.splitlines() or [""]),
                      default=1)
        width = longest if column.no_wrap else min(longest, _TEXT_MIN)
        total += width + tab._get_padding_width(index)
    return total


def show(tab: Table, console: Console) -> None:
    """Print ``tab`` at the console's width, or wider where its identifiers need it."""
    width = needed_width(tab, console)
    if width <= console.width:
        console.print(tab)
        return
    wide = Console(file=console.file, width=width, force_terminal=console.is_terminal,
                   color_system=console.color_system, no_color=console.no_color,  # type: ignore[arg-type]
                   highlight=False)
    wide.print(tab, crop=False)
