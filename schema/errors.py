"""How errors reach clients: expected ones with their code, unexpected ones masked.

An unexpected exception is logged here with its stack trace and replaced by
"Unexpected error." with the code INTERNAL_SERVER_ERROR; nothing of it reaches
the client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql.error import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from api.errors import RundrufError

# The request itself names nothing to run: no query, an unknown operationName,
# an operation type the transport does not carry. The client's mistake, no bug.
_REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)

log = logging.getLogger(__name__)


def is_expected(error: GraphQLError) -> bool:
    original = error.original_error
    # No original error: a syntax, validation or variable error made by graphql-core.
    return original is None or isinstance(original, (RundrufError, GraphQLError, *_REQUEST_ERRORS))


def _code_of(error: GraphQLError) -> str:
    if isinstance(error.original_error, RundrufError):
        return error.original_error.code
    if isinstance(error.original_error, _REQUEST_ERRORS):
        return "BAD_REQUEST"
    return "GRAPHQL_VALIDATION_FAILED" if error.path is None else "BAD_USER_INPUT"


def shape(error: GraphQLError) -> GraphQLError:
    if not is_expected(error):
        log.error("unexpected error in %s", error.path, exc_info=error.original_error)
        return GraphQLError(
            "Unexpected error.",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL_SERVER_ERROR"},
        )
    if error.extensions and "code" in error.extensions:
        return error
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": _code_of(error)},
    )


class ErrorPolicy(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:
            # Raised past the result (a syntax error from the parser cache): the
            # error object itself is what reaches the client, so it gets the code.
            if not (error.extensions and "code" in error.extensions):
                error.extensions = {**(error.extensions or {}), "code": _code_of(error)}
            raise
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [shape(e) for e in errors]
        self._shape_pre_execution()

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """WebSocket results go out one by one, before ``on_operation`` ends."""
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [shape(e) for e in errors]
        self._shape_pre_execution()
        yield None

    def _shape_pre_execution(self) -> None:
        if self.execution_context.pre_execution_errors:
            self.execution_context.pre_execution_errors = [
                shape(e) for e in self.execution_context.pre_execution_errors
            ]
