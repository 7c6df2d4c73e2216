"""Load every ``*.json`` in a directory with Harbor's ATIF models; print what they read as JSON.

Run by the harbor side venv's Python: ``python harbor_validate.py DIR``. For each file it
validates twice, as Harbor does it: ``Trajectory.model_validate_json`` (the pydantic models) and
``TrajectoryValidator().validate(path)`` (Harbor's validator, which collects every error).
"""

import json
import sys
from collections import Counter
from importlib.metadata import version
from pathlib import Path

from harbor.models.trajectories import Trajectory
from harbor.utils.trajectory_validator import TrajectoryValidator


def read(path: Path) -> dict:
    validator = TrajectoryValidator()
    valid = validator.validate(path)
    try:
        t = Trajectory.model_validate_json(path.read_text())
    except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
        return {"file": path.name, "valid": False, "errors": [*validator.errors, str(exc)]}
    steps = t.steps
    return {
        "file": path.name,
        "valid": valid,
        "errors": validator.errors,
        "schema_version": t.schema_version,
        "session_id": t.session_id,
        "agent": t.agent.model_dump(exclude_none=True, exclude={"extra"}),
        "steps": len(steps),
        "sources": dict(Counter(s.source for s in steps)),
        "tool_call_ids": [c.tool_call_id for s in steps for c in (s.tool_calls or [])],
        "results": [r.source_call_id for s in steps if s.observation for r in s.observation.results],
        "parts": [s.extra.get("part") for s in steps if s.extra and "part" in s.extra],
        "step_prompt_tokens": {str(s.extra["part"]): s.metrics.prompt_tokens for s in steps
                               if s.metrics and s.extra and "part" in s.extra},
        "step_completion_tokens": {str(s.extra["part"]): s.metrics.completion_tokens for s in steps
                                   if s.metrics and s.extra and "part" in s.extra},
        "final": t.final_metrics.model_dump(exclude_none=True, exclude={"extra"}) if t.final_metrics else None,
    }


if __name__ == "__main__":
    files = sorted(Path(sys.argv[1]).glob("*.json"))
    print(json.dumps({"harbor": version("harbor"), "trajectories": [read(f) for f in files]}))
