"""The README's Python example runs as written (from the repository root)."""

from __future__ import annotations

import re

from common import REPO


def test_python_example_runs(monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    section = text.split("## Using dmtrec from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert printed.strip() == "torch.Size([2, 128, 128, 4]) tensor(True) True"
