"""Tables that never cut what users type or read as a value.

Identifier and number columns (``ID``, ``NUMBER``) are never wrapped nor cut; text columns
(``TEXT``: descriptions, paths) wrap, folding a word longer than the column. When the
identifiers alone are wider than the terminal (or than 80 columns when piped), the table
is printed wider than the terminal rather than cut: the terminal wraps the lines, every
character is still there (``tests/test_cli.py::test_tables_never_cut_names_at_80_columns``).
"""

from __future__ import annotations

from typing import Any, get_origin

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

ID, NUMBER, TEXT = "id", "number", "text"
_TEXT_MIN = 12  # the narrowest a wrapped text column gets before the table grows
_ROOM = 1 << 16  # more than any border, edge and padding: no fixed column is squeezed


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


def _content_width(column: Column, console: Console) -> int:
    """The cells' width an ID or NUMBER column needs uncut (a TEXT column: at most
    ``_TEXT_MIN``, since it wraps)."""
    cells = [str(column.header), *(_plain(c, console) for c in column.cells)]
    longest = max((cell_len(line) for c in cells for line in c.splitlines() or [""]),
                  default=1)
    return max(longest if column.no_wrap else min(longest, _TEXT_MIN), 1)


def needed_width(tab: Table, console: Console) -> int:
    """Columns the table needs so that no ID or NUMBER cell is cut.

    rich measures the table (borders, edges, padding) with each column fixed at the width
    its cells need for a moment: its public ``Column.width`` and ``Console.measure``."""
    widths = [_content_width(column, console) for column in tab.columns]
    saved = [column.width for column in tab.columns]
    try:
        for column, width in zip(tab.columns, widths, strict=True):
            column.width = width
        room = console.options.update_width(_ROOM + sum(widths))
        return console.measure(tab, options=room).minimum
    finally:
        for column, before in zip(tab.columns, saved, strict=True):
            column.width = before


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


def _type_name(annotation: Any) -> str:
    """``list[int]``, ``int``, ``Literal['a', 'b']``: as a user would write it."""
    plain = isinstance(annotation, type) and get_origin(annotation) is None
    text = annotation.__name__ if plain else str(annotation)
    return text.replace("typing.", "")


def print_params(console: Console, title: str, model: Any, values: dict[str, Any]) -> None:
    """A part's hyperparameters (``model``, a pydantic model class): each one's value in
    ``values``, default, type and description, under ``title`` (its own line, so it wraps
    between words)."""
    if not model.model_fields:
        console.print(f"{title} (no hyperparameters)", highlight=False, markup=False)
        return
    console.print(title, highlight=False, markup=False)
    params = table([("param", ID), ("value", ID), ("default", ID), ("type", ID),
                    ("description", TEXT)])
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default())
        cells = (name, repr(values.get(name)), default, _type_name(field.annotation),
                 field.description or "")
        params.add_row(*(escape(c) for c in cells))  # list[int] is not rich markup
    show(params, console)
