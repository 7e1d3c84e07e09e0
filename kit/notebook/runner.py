"""Execute the kit's notebooks headlessly with injected parameters (`make notebooks`, the tests).

Each notebook has one code cell tagged `parameters` (papermill's convention).
`execute_notebook` inserts a cell tagged `injected-parameters` right after it
that reassigns the given names, runs every cell with `nbclient` in the
notebook's own directory (as Jupyter does) and can save the notebook with its
outputs. A failing cell raises `nbclient.exceptions.CellExecutionError`
naming the cell and the error.

    python -m kit.notebook notebooks/*.ipynb --set SMOKE=True --set WORK='"runs/nb"'
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kit.errors import UserError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def inject_parameters(nb, parameters: Mapping[str, Any]):
    """Put a cell assigning `parameters` after the `parameters` cell (replacing an earlier injection).

    Example:
        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("SMOKE = False",
        ...                                       metadata={"tags": ["parameters"]})])
        >>> inject_parameters(nb, {"SMOKE": True}).cells[1].source
        '# Injected parameters\\nSMOKE = True'
    """
    import nbformat

    cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    index = next((i for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), None)
    if index is None:
        raise UserError(
            "The notebook has no cell tagged 'parameters': tag its parameters cell "
            '(cell metadata {"tags": ["parameters"]}).'
        )
    if parameters:
        source = "\n".join(["# Injected parameters", *(f"{k} = {v!r}" for k, v in parameters.items())])
        cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]}))
    nb.cells = cells
    return nb


def relative_paths(nb, root: str | Path):
    """Write paths under `root` as relative ones in every output, so a saved
    notebook does not carry the directory it happened to run in.

    Example:
        >>> import nbformat
        >>> out = nbformat.v4.new_output("stream", name="stderr", text="/srv/repo/.venv/x.py:1: Warning\\n")
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", outputs=[out])])
        >>> relative_paths(nb, "/srv/repo").cells[0].outputs[0].text
        '.venv/x.py:1: Warning\\n'
    """
    prefix = str(Path(root)).rstrip("/")

    def fix(value):
        if isinstance(value, str):
            return value.replace(prefix + "/", "").replace(prefix, ".")
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            for key in ("text", "traceback", "evalue"):
                if key in output:
                    output[key] = fix(output[key])
            for mime, data in output.get("data", {}).items():
                if mime.startswith("text/"):
                    output["data"][mime] = fix(data)
    return nb


def execute_notebook(
    path: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
    timeout: int = 900,
    kernel_name: str = "python3",
):
    """Run `path` top to bottom with `parameters` injected; save it with outputs to `out` when given.

    Returns:
        The executed `nbformat.NotebookNode`.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell failed (the message shows the cell and traceback).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = inject_parameters(nbformat.read(path, as_version=4), parameters or {})
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=kernel_name, resources={"metadata": {"path": str(path.resolve().parent)}}
    )
    client.execute()
    if out is not None:
        relative_paths(nb, Path(__file__).resolve().parents[2])
        nbformat.write(nb, str(out))
    return nb


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m kit.notebook NOTEBOOK... [--set NAME=PYTHON_LITERAL ...] [--inplace]`."""
    p = argparse.ArgumentParser(prog="python -m kit.notebook", description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", help="notebooks to execute, in order")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="inject a parameter; VALUE is a Python literal (True, 4, '\"runs/nb\"')",
    )
    p.add_argument("--inplace", action="store_true", help="save each notebook with its outputs")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell (default 900)")
    args = p.parse_args(argv)
    params = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            params[name.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name.strip()] = value
    missing = [nb for nb in args.notebooks if not Path(nb).is_file()]
    if missing:
        print(f"error: notebook not found: {missing[0]}. Give paths like notebooks/1_eda.ipynb.", file=sys.stderr)
        return 2
    for nb in args.notebooks:
        t = time.perf_counter()
        execute_notebook(nb, parameters=params, out=nb if args.inplace else None, timeout=args.timeout)
        print(f"{nb}: ran in {time.perf_counter() - t:.0f} s" + (" (saved with outputs)" if args.inplace else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
