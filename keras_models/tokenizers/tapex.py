"""TAPEX inputs: a table (and a query) flattened into one text, then byte-level BPE.

Transformers' ``TapexTokenizer`` (python-only, last shipped in Transformers 4.x) writes a table as
``"col : h1 | h2 row 1 : a | b row 2 : c | d"``, puts the query in front of it (one space between),
lower-cases the whole text (``do_lower_case``, default True) and tokenizes it like BART. Before that,
every string cell of ``max_cell_length`` (default 15) BPE pieces or more is cut to that many pieces.

Tables are duck-typed, never pandas itself: anything with ``.columns`` and ``.values.tolist()`` (or
``.itertuples``), e.g. a ``pandas.DataFrame``, or a dict mapping each column name to its cells.
"""

from __future__ import annotations

import numbers


def is_table(obj) -> bool:
    return isinstance(obj, dict) or (hasattr(obj, "columns") and not isinstance(obj, (str, bytes)))


def _header_and_rows(table) -> tuple[list, list[list]]:
    if isinstance(table, dict):
        header = list(table.keys())
        columns = [list(v) for v in table.values()]
        if len({len(c) for c in columns}) > 1:
            raise ValueError(f"table: every column must hold the same number of cells, got {[len(c) for c in columns]}")
        rows = [list(r) for r in zip(*columns)] if columns else []
        return header, rows
    header = list(table.columns)
    if hasattr(table, "values") and hasattr(table.values, "tolist"):
        rows = [list(r) for r in table.values.tolist()]
    elif hasattr(table, "itertuples"):
        rows = [list(r) for r in table.itertuples(index=False)]
    else:
        raise TypeError(
            f"table: {type(table).__name__} has .columns but neither .values.tolist() nor .itertuples(): "
            "pass a pandas-like DataFrame or a dict of column -> cells"
        )
    return header, rows


def _cell_text(tok, cell, max_cell_length: int, lower: bool) -> str:
    if isinstance(cell, numbers.Integral):  # Transformers writes ints with str(); floats, None fail there
        return str(cell)
    if not isinstance(cell, str):
        raise TypeError(
            f"table: cell {cell!r} of type {type(cell).__name__} is not supported: TAPEX cells are strings or "
            "integers (convert other values with str() first)"
        )
    if cell.strip() == "":
        return cell
    pieces = tok.tokenize(cell.lower() if lower else cell)
    if len(pieces) >= max_cell_length:
        return tok.convert_tokens_to_string(pieces[:max_cell_length])
    return cell


def linearize(tok, table, query, max_cell_length: int, lower: bool) -> str:
    """The text TAPEX tokenizes for one table and one query (None: the table alone)."""
    header, rows = _header_and_rows(table)
    for name in header:
        if not isinstance(name, str):
            raise TypeError(f"table: column name {name!r} is not a string")
    if not header or not rows:
        flat = ""
    else:
        parts = ["col : " + " | ".join(header)]
        for i, row in enumerate(rows):
            cells = [_cell_text(tok, c, max_cell_length, lower) for c in row]
            parts.append(f"row {i + 1} : " + " | ".join(cells))
        flat = " ".join(parts).strip()
    if query is not None and not isinstance(query, str):
        raise ValueError(f"query must be a string or a list of strings, got {type(query).__name__}")
    text = (query + (" " if flat else "") + flat) if query else flat
    return text.lower() if lower else text


def tapex_texts(tok, table, query=None, answer=None, max_cell_length=None):
    """One text (single table and query) or a list (a batch of tables and/or queries)."""
    config = tok.init_config
    lower = bool(config.get("do_lower_case", True))
    if max_cell_length is None:
        max_cell_length = int(config.get("max_cell_length", 15))
    tables_batched = isinstance(table, (list, tuple))
    if tables_batched:
        if not table or not all(is_table(t) for t in table):
            raise ValueError("table must be a DataFrame-like table or a dict of column -> cells, or a non-empty list of them")
    elif not is_table(table):
        raise ValueError(
            f"table must be a DataFrame-like table (with .columns) or a dict of column -> cells, or a list of them; "
            f"got {type(table).__name__}"
        )
    queries_batched = isinstance(query, (list, tuple))
    if queries_batched and not all(isinstance(q, str) for q in query):
        raise ValueError("query must be a string or a list of strings")
    if answer is not None and not isinstance(answer, (str, list, tuple)):
        raise ValueError(f"answer must be a string or a list of strings, got {type(answer).__name__}")
    if not tables_batched and not queries_batched:
        return linearize(tok, table, query, max_cell_length, lower)
    tables = list(table) if tables_batched else [table] * len(query)
    queries = list(query) if queries_batched else [query] * len(tables)
    if len(tables) != len(queries):
        raise ValueError(f"got {len(tables)} tables but {len(queries)} queries")
    return [linearize(tok, t, q, max_cell_length, lower) for t, q in zip(tables, queries)]
