"""Running a photo bench's command in-process, as the tests of ``bench.enrolment_templates``
and ``bench.small_faces`` do."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guards.exit_codes import ExitCode


def json_report(main: Callable[[list[str] | None], int], photos: Path) -> dict[str, Any]:
    """``main(["--json", "--photos", photos])`` run once; its one line of stdout parsed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--json", "--photos", str(photos)])
    assert code == ExitCode.OK
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, "--json prints one JSON object on one line"
    parsed = json.loads(lines[0])
    assert isinstance(parsed, dict)
    return parsed
