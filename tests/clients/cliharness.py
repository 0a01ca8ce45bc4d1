"""Runs the `ics` CLI in this process (main(argv) with captured stdout,
stderr and stdin), which is what most CLI tests need: the same code path as
the script, without a Python start-up per command. Tests that need a real
process (cwd-relative credential lookup, a concurrent `watch`) use
subprocess with CLI."""
from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

CLI = str(Path(__file__).resolve().parents[2] / "clients" / "cli" / "ics")
_loader = importlib.machinery.SourceFileLoader("ics_cli", CLI)
_spec = importlib.util.spec_from_loader("ics_cli", _loader)
ics_cli = importlib.util.module_from_spec(_spec)
_loader.exec_module(ics_cli)


def run_cli(*args: str, cred: str = "", stdin: str = "",
            env_extra: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_stdin = sys.stdin
    os.environ.pop("ICS_CRED", None)
    os.environ.update(env_extra or {})
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = ics_cli.main((["--cred", cred] if cred else []) + list(args))
    finally:
        sys.stdin = saved_stdin
        os.environ.clear()
        os.environ.update(saved_env)
    return rc, out.getvalue(), err.getvalue()
