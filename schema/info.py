"""The resolver ``Info`` type bound to our context."""

from typing import Any

from strawberry.types import Info as _Info

from schema.context import Context

Info = _Info[Context, Any]
