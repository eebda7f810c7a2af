"""One guard for every argument of every operation, before any resolver runs.

Every text the API takes passes here first: String and ID arguments, the fields of input
objects and their lists, and the texts inside JSON arguments; every DateTime must carry
its zone. A refusal is a BAD_USER_INPUT naming the argument's path with a `reason` code,
and nothing of the operation runs, so nothing is written. The checks that mean something
for one field (a name, a PIN, a reported time) stay in the services; this guard only
makes sure no text reaches them, the database or the agent that would fail only there
(NUL, which PostgreSQL refuses; lone surrogates, which are no UTF-8; a 100,000-character
"name"), or read otherwise than written (bidi controls). Its rules per field (limits, text
areas, the PBX's texts that services clean) are in schema/input_limits.py. Its work is
linear and bounded: each variable checked once per place it is used, MAX_ITEMS per list,
MAX_VALUES per operation. See docs/decisions/input-guard.md.
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
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    VariableValues,
    get_named_type,
    get_operation_ast,
    get_variable_values,
    is_input_type,
)
from graphql.utilities import coerce_input_literal, type_from_ast
from graphql.utilities.validate_input_value import validate_input_value
from strawberry.extensions import SchemaExtension

from api.domain import validation
from api.errors import BadInput, BadRequest
from schema.input_limits import CLEANED, DEFAULT_MAX_LENGTH, MAX_LENGTH, MULTI_LINE, PBX_TEXT

# Work bounds for one operation. Each variable's value is checked once per place it is
# used, each literal once; these cap what one request can make the guard (and execution
# after it) go through: 100,000 values is far beyond any real operation and a few tens
# of milliseconds of checking.
MAX_VALUES = 100_000
# Items in one list: the largest real one is a group's members (a PBX has a few thousand
# users); a report carries at most 2000 events.
MAX_ITEMS = 10_000

# Arguments of this name wrap a mutation's input; the services name its fields without
# it ("name", not "input.name"), and so does the guard.
WRAPPER = "input"

# A path as a linked list, (parent, key), made per input object or list, never per
# checked text: it becomes a field name only when something is refused.
Path = tuple[Any, str | int] | None


def field_name(path: Path) -> str:
    """`(((((None, "input"), "events"), 0), "detail")` → "events.0.detail"."""
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    if len(keys) > 1 and keys[0] == WRAPPER:
        keys = keys[1:]
    return ".".join(str(k) for k in keys)


class _Check:
    """Checks values against the guard's rules, counting the work (MAX_VALUES)."""

    def __init__(self) -> None:
        self.spent = 0
        # (variable, where it is used, its type there): each checked once, however often
        # the document repeats the field that uses it.
        self.done: set[tuple[str, str, str]] = set()

    def spend(self, values: int) -> None:
        self.spent += values
        if self.spent > MAX_VALUES:
            raise BadRequest(
                f"the operation holds more than {MAX_VALUES} values",
                reason="tooManyValues",
                max=MAX_VALUES,
            )

    def text(self, value: Any, path: Path, coordinate: str) -> None:
        """A scalar: a String or ID, or what a custom scalar (DateTime, JSON) holds."""
        if coordinate in CLEANED:
            return
        max_length = MAX_LENGTH.get(coordinate, DEFAULT_MAX_LENGTH)
        lines = coordinate in MULTI_LINE
        try:
            for item in self._texts(value):
                if isinstance(item, datetime):
                    validation.aware(item, "")
                elif coordinate in PBX_TEXT:
                    if len(item) > max_length:
                        raise validation.too_long("", max_length)
                else:
                    validation.input_text(item, "", max_length, lines)
        except BadInput as bad:
            bad.details["field"] = field_name(path)  # named only now that it is refused
            raise

    def _texts(self, value: Any) -> Iterator[str | datetime]:
        """The strings (keys included) and times inside a scalar's value, without
        recursion: a JSON argument may be nested as deep as the body limit allows."""
        stack = [value]
        while stack:
            item = stack.pop()
            self.spend(1)
            if isinstance(item, str | datetime):
                yield item
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list | tuple):
                stack.extend(item)

    def value(self, type_: GraphQLInputType, value: Any, path: Path, coordinate: str) -> None:
        """Raises BadInput for the first text or time in `value` (coerced to `type_`)
        that the guard refuses, BadRequest when the work runs over MAX_VALUES."""
        stack: list[tuple[GraphQLInputType, Any, Path, str]] = [(type_, value, path, coordinate)]
        while stack:
            type_, value, path, coordinate = stack.pop()
            if value is None:
                continue
            if isinstance(type_, GraphQLNonNull):
                type_ = type_.of_type
            if isinstance(type_, GraphQLList):
                items = value if isinstance(value, list) else [value]
                self.items(items, path)
                item_type = type_.of_type
                leaf = get_named_type(item_type)
                if isinstance(leaf, GraphQLEnumType):
                    continue
                if isinstance(leaf, GraphQLInputObjectType) or isinstance(
                    _nullable(item_type), GraphQLList
                ):
                    # Reversed onto the stack, so the first bad item is the one named.
                    stack.extend(
                        (item_type, v, (path, i), coordinate)
                        for i, v in reversed(list(enumerate(items)))
                    )
                    continue
                for i, v in enumerate(items):  # the common case, a list of texts or ids
                    if v is not None:
                        self.text(v, (path, i), coordinate)
            elif isinstance(type_, GraphQLInputObjectType):
                if not isinstance(value, dict):
                    continue
                self.spend(len(value))
                stack.extend(
                    (field.type, value[name], (path, name), f"{type_.name}.{name}")
                    for name, field in reversed(type_.fields.items())
                    if name in value
                )
            elif not isinstance(type_, GraphQLEnumType):
                # Any scalar, the built-in and custom ones alike: what matters is what it holds.
                self.text(value, path, coordinate)

    def items(self, items: list[Any], path: Path) -> None:
        if len(items) > MAX_ITEMS:
            raise BadInput(
                f"at most {MAX_ITEMS} items",
                field=field_name(path),
                reason="tooManyItems",
                max=MAX_ITEMS,
            )
        self.spend(len(items))

    def literal(
        self,
        type_: GraphQLInputType,
        node: ValueNode,
        path: Path,
        coordinate: str,
        variables: VariableValues,
    ) -> None:
        """An argument as the document writes it: literals checked here, each variable it
        uses checked once (at its first place) with the rules of where it is used."""
        stack: list[tuple[GraphQLInputType, ValueNode, Path, str]] = [
            (type_, node, path, coordinate)
        ]
        while stack:
            type_, node, path, coordinate = stack.pop()
            if isinstance(node, VariableNode):
                name = node.name.value
                key = (name, coordinate, str(type_))
                if name in variables.coerced and key not in self.done:
                    self.done.add(key)
                    self.value(type_, variables.coerced[name], path, coordinate)
                continue
            if isinstance(node, NullValueNode):
                continue
            nullable = _nullable(type_)
            if isinstance(nullable, GraphQLList):
                nodes = list(node.values) if isinstance(node, ListValueNode) else [node]
                self.items(nodes, path)
                stack.extend(
                    (nullable.of_type, n, (path, i), coordinate)
                    for i, n in reversed(list(enumerate(nodes)))
                )
            elif isinstance(nullable, GraphQLInputObjectType):
                if not isinstance(node, ObjectValueNode):
                    continue
                self.spend(len(node.fields))
                for f in reversed(node.fields):
                    field = nullable.fields.get(f.name.value)
                    if field is not None:
                        name = f.name.value
                        stack.append((field.type, f.value, (path, name), f"{nullable.name}.{name}"))
            elif not isinstance(nullable, GraphQLEnumType):
                # A scalar literal (a JSON literal may hold variables, filled in here).
                value = coerce_input_literal(node, nullable, variables)
                if value is not Undefined:
                    self.text(value, path, coordinate)


def _nullable(type_: GraphQLInputType) -> GraphQLInputType:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


Parent = GraphQLObjectType | GraphQLInterfaceType


class _Walk:
    """The fields an operation selects, with their arguments as execution will see them."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
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
        return _malformed_time(schema, document, operation, raw_variables or {})
    check = _Check()
    walk = _Walk(schema, document)
    for node, field, parent in walk.selections(root, operation.selection_set):
        try:
            for argument in node.arguments or ():
                name = argument.name.value
                arg = field.args.get(name)
                if arg is not None:  # an unknown one: validation has refused it already
                    coordinate = f"{parent.name}.{node.name.value}({name}:)"
                    check.literal(arg.type, argument.value, (None, name), coordinate, variables)
        except (BadInput, BadRequest) as bad:
            return GraphQLError(
                bad.message, nodes=[node], original_error=bad, extensions=bad.extensions
            )
    return None


# The custom scalars whose text a person types: a value that does not parse is the
# person's mistake, named like any other refusal (`notATime`), not a page that no longer
# fits the server (GRAPHQL_VALIDATION_FAILED, graphql-core's answer to any variable that
# does not coerce).
_TIMES = frozenset({"DateTime"})


def _malformed_time(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    raw_variables: dict[str, Any],
) -> GraphQLError | None:
    """BAD_USER_INPUT naming the field for a variable's time that does not parse
    ("2026-13-01"); None for any other coercion error, left to execution's own words."""
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        type_ = type_from_ast(schema, definition.type)
        raw = raw_variables.get(name)
        if raw is None or not is_input_type(type_):
            continue
        problems: list[tuple[GraphQLError, list[str | int]]] = []

        def note(error: GraphQLError, path: list[str | int], found: list[Any] = problems) -> None:
            found.append((error, path))

        validate_input_value(raw, type_, note)
        for error, inner in problems:
            if get_named_type(_type_at(type_, inner)).name in _TIMES:
                place: Path = _places(schema, document, operation).get(name, (None, name))
                for key in inner:
                    place = (place, key)
                bad = BadInput(error.message, field=field_name(place), reason="notATime")
                return GraphQLError(
                    bad.message, nodes=[definition], original_error=bad, extensions=bad.extensions
                )
    return None


def _type_at(type_: Any, path: list[str | int]) -> Any:
    """The input type at `path` inside `type_` (list positions and input fields)."""
    for key in path:
        type_ = _nullable(type_)
        if isinstance(type_, GraphQLList):
            type_ = type_.of_type
        elif isinstance(type_, GraphQLInputObjectType) and key in type_.fields:
            type_ = type_.fields[str(key)].type
    return type_


def _places(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> dict[str, Path]:
    """Where each variable is first used: the argument's path to it."""
    places: dict[str, Path] = {}
    walk = _Walk(schema, document)
    root = schema.get_root_type(operation.operation)
    for node, _field, _parent in walk.selections(root, operation.selection_set):
        for argument in node.arguments or ():
            stack: list[tuple[ValueNode, Path]] = [(argument.value, (None, argument.name.value))]
            while stack:
                value, path = stack.pop()
                if isinstance(value, VariableNode):
                    places.setdefault(value.name.value, path)
                elif isinstance(value, ObjectValueNode):
                    stack.extend((f.value, (path, f.name.value)) for f in value.fields)
                elif isinstance(value, ListValueNode):
                    stack.extend((v, (path, i)) for i, v in enumerate(value.values))
    return places


class InputGuard(SchemaExtension):
    """Refuses the whole operation, before it executes, when an argument is refused.

    It runs on the event loop, as execution does: its work is bounded (MAX_VALUES) and
    linear in the request, so a thread would cost more than it saves."""

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
