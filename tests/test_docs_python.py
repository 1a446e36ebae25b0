"""Runs every section of docs/python.md as the script it is, in a scratch directory,
so the page's examples cannot rot. A section marked `<!-- slow ... -->` is a slow test."""
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "python.md")


def sections():
    """[(title, code, slow)] of the page's "## " sections that hold Python blocks."""
    with open(PAGE) as f:
        parts = re.split(r"^## (.+)$", f.read(), flags=re.MULTILINE)[1:]
    found = []
    for title, body in zip(parts[::2], parts[1::2]):
        code = "\n".join(re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL))
        if code:
            slow = "<!-- slow" in body
            found.append(pytest.param(title, code, id=title.split(":")[0] + ":" +
                                      title.split(":")[1].split(",")[0].strip(),
                                      marks=[pytest.mark.slow] if slow else []))
    return found


@pytest.mark.parametrize("title, code", sections())
def test_section_runs_as_written(title, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{PAGE}: {title}", "exec"), {"__name__": "__main__"})
