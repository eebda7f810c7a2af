"""The root schema, composed from the feature folders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import ASTValidationRule
from graphql.error import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from api.settings import Settings
from schema.agent.mutations import AgentMutation
from schema.agent.subscriptions import AgentSubscription
from schema.audit.queries import AuditQuery
from schema.auth.mutations import AuthMutation
from schema.auth.queries import AuthQuery
from schema.errors import ErrorPolicy
from schema.history.queries import HistoryQuery
from schema.input_guard import InputGuard
from schema.ops.queries import OpsQuery
from schema.pbx.mutations import PbxMutation
from schema.pbx.queries import PbxQuery
from schema.pbx.subscriptions import PbxSubscription
from schema.platform.mutations import PlatformMutation
from schema.platform.queries import PlatformQuery
from schema.platform.subscriptions import PlatformSubscription

Query = merge_types(
    "Query", (AuthQuery, PlatformQuery, PbxQuery, HistoryQuery, OpsQuery, AuditQuery)
)
Mutation = merge_types("Mutation", (AuthMutation, PlatformMutation, PbxMutation, AgentMutation))
Subscription = merge_types(
    "Subscription", (AgentSubscription, PbxSubscription, PlatformSubscription)
)


class QuietParserCache(ParserCache):
    """ParserCache parses in its hook, outside Strawberry's own try: a syntax error
    (or too many tokens) escaped the operation, which over a WebSocket is a
    traceback instead of an ``error`` message. On such an error the document stays
    unset, and Strawberry parses once more where it turns the error into the
    operation's result."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        with contextlib.suppress(GraphQLError):
            context.graphql_document = self.cached_parse_document(
                context.query, **context.parse_options
            )
        yield


class RundrufSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorPolicy logs what is unexpected; expected errors are not log noise.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema with its protections; limits come from the settings."""
    depth = settings.graphql_max_depth if settings else 10
    aliases = settings.graphql_max_aliases if settings else 15
    tokens = settings.graphql_max_tokens if settings else 2000
    # Factories, not instances: each request gets fresh extension objects (the
    # parser and validation caches themselves are shared at module level). The
    # limit rules are built once: rule classes made per request would never hit
    # the validation cache, whose key includes them.
    rules: list[type[ASTValidationRule]] = [depth_rule(depth, None), alias_rule(aliases)]
    extensions: list[Any] = [
        ErrorPolicy,
        # Before any other on_execute hook: its refusal ends the operation there.
        InputGuard,
        lambda: MaxTokensLimiter(max_token_count=tokens),
        lambda: QuietParserCache(maxsize=256),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=256),
    ]
    return RundrufSchema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=extensions
    )


def sdl() -> str:
    return build_schema().as_str() + "\n"
