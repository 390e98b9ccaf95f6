"""The write-or-check step shared by the generators in tools/ (gen_models_table.py, gen_model_index.py)."""

import sys


def write_or_check(path, text, check, command):
    """With ``check``: exit status 1 and a message naming ``command`` when ``path`` does not hold
    ``text``, else 0. Otherwise write ``text`` to ``path``. Returns the exit status."""
    if check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is out of date: run {command}", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return 0
