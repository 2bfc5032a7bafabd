"""Values quoted in messages the way Go's ``%q`` quotes them.

containers/image writes names and values with ``%q``; quoting them the same way
keeps towline's messages comparable with podman's and keeps odd bytes visible.
"""

from __future__ import annotations

import json

__all__ = ["go_quote"]


def go_quote(value: str) -> str:
    """``value`` in double quotes, with escapes for quotes, backslashes and control bytes."""
    return json.dumps(value, ensure_ascii=False)
