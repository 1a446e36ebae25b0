"""The markdown tables every benchmark prints (and bench.all writes), so a result
pastes into docs/ as it is."""


def markdown_table(columns, rows):
    """Lines of a markdown table: `columns` are header strings, a leading "<" marks a
    left-aligned (text) column, the rest are right-aligned; `rows` are sequences of
    cells, already formatted."""
    header = [c.lstrip("<") for c in columns]
    rule = ["---" if c.startswith("<") else "---:" for c in columns]
    return [f"| {' | '.join(line)} |" for line in (header, rule)] + [
        f"| {' | '.join(str(cell) for cell in row)} |" for row in rows]


def speed(value, digits=0):
    """A speed cell: thousands separated, "n/a" for None."""
    return "n/a" if value is None else f"{value:,.{digits}f}"


def against_goal(value, goal):
    """A measured ratio beside its goal: "1.23x (goal 1.1x: met)"."""
    return f"{value:.2f}x (goal {goal}x: {'met' if value >= goal else 'missed'})"


def ratio(ours, theirs):
    return "n/a" if ours is None or theirs is None else f"{ours / theirs:.2f}"


def print_record(record, description, table, as_json):
    """What a bench script prints at its end: the description, its table, and with
    `as_json` the record as one JSON line (what bench.all reads)."""
    import json
    print(f"\n{description(record)}\n")
    print("\n".join(table(record)))
    if as_json:
        print(json.dumps(record))
