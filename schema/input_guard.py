"""One guard for every argument of every operation, before any resolver runs.

Every text the API takes passes here first: String and ID arguments, the fields of input
objects and their lists, and the texts inside JSON arguments; every DateTime must carry
its zone. A refusal is a BAD_USER_INPUT naming the argument's path, and nothing of the
operation runs, so nothing is written. The checks that mean something for one field (a
name, a PIN, a reported time) stay in the services; this guard only makes sure no text
reaches them, the database or the agent that would fail only there (NUL, which
PostgreSQL refuses; lone surrogates, which are no UTF-8; a 100,000-character "name").
The only texts let through are the few an agent reports from the PBX, which the service
stores cleaned (`CLEANED`). See docs/decisions/input-guard.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_argument_values,
    get_named_type,
    get_operation_ast,
    get_variable_values,
)
from strawberry.extensions import SchemaExtension

from api.domain import validation
from api.errors import BadInput

# Generous: no name, number or message of this API comes near it; a page of text does.
DEFAULT_MAX_LENGTH = 4000

# Where a text may be longer, by schema coordinate: `Type.field(argument:)` for an
# argument, `InputType.field` for a field of an input object.
MAX_LENGTH: dict[str, int] = {
    # The settings allow up to 20,000 characters (tts_max_chars); the service applies
    # the configured limit.
    "Mutation.synthesizeAnnouncement(text:)": 20_000,
}

# Where tab and line breaks are allowed: texts written in a text area.
MULTI_LINE: frozenset[str] = frozenset({"Mutation.synthesizeAnnouncement(text:)"})

# Texts the service cleans instead of the guard refusing them: what an agent reports from
# the PBX (a directory snapshot, PowerShell's words about a failure) is stored cleaned and
# cut, never refused as a whole, so that an agent older than its own cleaning still gets
# its commands done (docs/decisions/poison-results.md).
CLEANED: frozenset[str] = frozenset(
    {"Mutation.completeCommand(result:)", "Mutation.completeCommand(error:)"}
)

# Arguments of this name wrap a mutation's input; the services name its fields without
# it ("name", not "input.name"), and so does the guard.
WRAPPER = "input"


def field_name(path: list[str | int]) -> str:
    """`["input", "events", 0, "detail"]` → "events.0.detail"."""
    if len(path) > 1 and path[0] == WRAPPER:
        path = path[1:]
    return ".".join(str(p) for p in path)


def _texts(value: Any) -> Iterator[str | datetime]:
    """The strings (keys included) and times inside a scalar's value, without recursion:
    a JSON argument may be nested as deep as the body limit allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | datetime):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _check_scalar(value: Any, path: list[str | int], coordinate: str) -> None:
    field = field_name(path)
    max_length = MAX_LENGTH.get(coordinate, DEFAULT_MAX_LENGTH)
    lines = coordinate in MULTI_LINE
    for item in _texts(value):
        if isinstance(item, datetime):
            validation.aware(item, field)
        else:
            validation.input_text(item, field, max_length, lines)


def check_value(
    type_: GraphQLInputType, value: Any, path: list[str | int], coordinate: str
) -> None:
    """Raises BadInput for the first text or time in `value` (coerced to `type_`) that the
    guard refuses."""
    stack: list[tuple[GraphQLInputType, Any, list[str | int], str]] = [
        (type_, value, path, coordinate)
    ]
    while stack:
        type_, value, path, coordinate = stack.pop()
        if value is None:
            continue
        if isinstance(type_, GraphQLNonNull):
            stack.append((type_.of_type, value, path, coordinate))
        elif isinstance(type_, GraphQLList):
            items = value if isinstance(value, list) else [value]
            # Reversed onto the stack, so the first bad item is the one named.
            stack.extend(
                reversed([(type_.of_type, v, [*path, i], coordinate) for i, v in enumerate(items)])
            )
        elif isinstance(type_, GraphQLInputObjectType):
            stack.extend(
                reversed(
                    [
                        (field.type, value[name], [*path, name], f"{type_.name}.{name}")
                        for name, field in type_.fields.items()
                        if isinstance(value, dict) and name in value
                    ]
                )
            )
        elif not isinstance(type_, GraphQLEnumType) and coordinate not in CLEANED:
            # Any scalar, the built-in and custom ones alike: what matters is what it holds.
            _check_scalar(value, path, coordinate)


Parent = GraphQLObjectType | GraphQLInterfaceType


class _Walk:
    """The fields an operation selects, with their arguments as execution will see them."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: Any) -> None:
        self.schema = schema
        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.seen: set[str] = set()

    def selections(
        self, parent: GraphQLNamedType | None, selection_set: SelectionSetNode | None
    ) -> Iterator[tuple[FieldNode, GraphQLField, Parent]]:
        for node in selection_set.selections if selection_set else ():
            if isinstance(node, FieldNode):
                if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
                    continue  # a union: only __typename
                field = parent.fields.get(node.name.value)  # None: __typename and the like
                if field is None:
                    continue
                yield node, field, parent
                yield from self.selections(get_named_type(field.type), node.selection_set)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                yield from self.selections(inner, node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in self.seen:
                    continue  # the same fragment's arguments were checked once already
                self.seen.add(name)
                inner = self.schema.get_type(fragment.type_condition.name.value)
                yield from self.selections(inner, fragment.selection_set)


def refusal(
    schema: GraphQLSchema,
    document: DocumentNode,
    raw_variables: dict[str, Any] | None,
    operation_name: str | None,
) -> GraphQLError | None:
    """The error for the first argument of the operation that the guard refuses, if any.

    Variables that do not coerce, and the like, are left to execution, which reports
    them in its own words."""
    operation: OperationDefinitionNode | None = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    root = schema.get_root_type(operation.operation)
    variables = get_variable_values(
        schema, operation.variable_definitions or (), raw_variables or {}
    )
    if isinstance(variables, list):
        return None
    walk = _Walk(schema, document, variables)
    for node, field, parent in walk.selections(root, operation.selection_set):
        if not field.args:
            continue
        try:
            values = get_argument_values(field, node, variables)
        except GraphQLError:
            continue
        try:
            for name, arg in field.args.items():
                if name in values:
                    coordinate = f"{parent.name}.{node.name.value}({name}:)"
                    check_value(arg.type, values[name], [name], coordinate)
        except BadInput as bad:
            return GraphQLError(
                bad.message, nodes=[node], original_error=bad, extensions=bad.extensions
            )
    return None


class InputGuard(SchemaExtension):
    """Refuses the whole operation, before it executes, when an argument is refused."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            error = refusal(
                context.schema._schema,  # graphql-core's schema; Strawberry has no accessor
                context.graphql_document,
                context.variables,
                context.operation_name,
            )
            if error is not None:
                # Strawberry turns what on_execute raises into the operation's only error,
                # for queries, mutations and subscriptions alike.
                raise error
        yield
