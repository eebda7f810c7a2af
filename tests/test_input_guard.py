"""The input guard (schema/input_guard.py): every text and time an operation takes is
checked before any resolver runs; a refusal is BAD_USER_INPUT naming the argument's path
and writes nothing, on SQLite and PostgreSQL alike (issue 14, points 1 and 4)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationType,
    Undefined,
    get_named_type,
)
from sqlalchemy import func, select

from api.app import create_app
from api.bootstrap import bootstrap
from api.migrate import upgrade
from api.models import Base, PbxUser
from api.runtime import Runtime
from api.settings import load_settings
from schema.errors import ErrorPolicy
from schema.input_guard import InputGuard
from schema.schema import build_schema
from tests.conftest import SECRET_KEY, Clock, error_codes
from tests.test_agent_service import world_directory
from tests.world import World, build_world

NAIVE = "2026-12-07T09:00:00"
AWARE = "2026-12-07T09:00:00Z"
BAD_TEXTS = [
    pytest.param("Tech\x00nik", id="nul"),
    pytest.param("Tech\x1bnik", id="escape"),
    pytest.param("Tech\x7fnik", id="del"),
    pytest.param("Tech\x85nik", id="c1-next-line"),
    pytest.param("Tech\ud800nik", id="lone-surrogate"),
    pytest.param("Detail\u202etxt.exe", id="bidi-override"),
    pytest.param("Tech\u2066nik", id="bidi-isolate"),
    pytest.param("Tech\u2028nik", id="line-separator"),
    pytest.param("\ufeffTechnik", id="bom"),
    pytest.param("Tech\uffffnik", id="noncharacter"),
    pytest.param("Tech\U000e0041nik", id="tag"),
    pytest.param("x" * 100_000, id="100k"),
]


# --------------------------------------------------------------------------- backends


@pytest.fixture
async def sqlite_rt(tmp_path: Path, clock: Clock) -> AsyncIterator[Runtime]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'embedded.db'}", secret_key=SECRET_KEY
    )
    upgrade(settings)
    runtime = dataclasses.replace(bootstrap(settings), clock=clock)
    yield runtime
    await runtime.db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Runtime:
    """The embedded default and the production database."""
    runtime: Runtime = request.getfixturevalue("sqlite_rt" if request.param == "sqlite" else "rt")
    return runtime


@dataclass
class Env:
    rt: Runtime
    client: httpx.AsyncClient
    world: World

    async def post(self, token: str | None, query: str, **variables: Any) -> dict[str, Any]:
        """As JSON with \\u escapes, which can carry a lone surrogate."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.world.tokens[token]}"
        response = await self.client.post(
            "/graphql",
            content=json.dumps({"query": query, "variables": variables}),
            headers=headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def rows(self) -> dict[str, int]:
        """How many rows each table holds: a refusal changes none of them."""
        async with self.rt.db.reading() as s:
            return {
                t.name: int(await s.scalar(select(func.count()).select_from(t)) or 0)
                for t in Base.metadata.sorted_tables
            }


@pytest.fixture
async def env(backend: Runtime) -> AsyncIterator[Env]:
    world = await build_world(backend)
    transport = httpx.ASGITransport(app=create_app(backend), client=("198.51.100.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield Env(backend, c, world)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    token: str | None
    query: str
    variables: Callable[[World, Any], dict[str, Any]]
    field: str


def _report(world: World, detail: Any) -> dict[str, Any]:
    return {
        "input": {
            "broadcastId": "guard-1",
            "groupPbxId": "g1",
            "mode": "TEST",
            "startedAt": AWARE,
            "memberCount": 1,
            "status": "RUNNING",
            "events": [
                {
                    "seq": 1,
                    "memberPbxId": "u1",
                    "memberName": "Anna",
                    "attemptNo": 1,
                    "kind": "ended",
                    "at": AWARE,
                    "outcome": "NO_ANSWER",
                    "detail": detail,
                }
            ],
        }
    }


def _with_event(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body["input"]["events"][0].update(fields)
    return body


def _notice(world: World, agent_number: Any = "231", at: Any = AWARE) -> dict[str, Any]:
    return {
        "input": {
            "noticeId": "guard-notice-1",
            "kind": "wrongPins",
            "agentNumber": agent_number,
            "count": 10,
            "at": at,
        }
    }


TEXT_CASES = {
    "createGroup-description": Case(
        "owner",
        'mutation($d: String) { createGroup(name: "Technik", description: $d) { id } }',
        lambda w, v: {"d": v},
        "description",
    ),
    "pbxUsers-search": Case(
        "owner",
        "query($s: String) { pbxUsers(search: $s) { id } }",
        lambda w, v: {"s": v},
        "search",
    ),
    "createTenant-name": Case(
        "platform",
        "mutation($n: String!) { createTenant(input: {name: $n}) { id } }",
        lambda w, v: {"n": v},
        "name",
    ),
    "login-email": Case(
        None,
        'mutation($e: String!) { login(email: $e, password: "secret") { token } }',
        lambda w, v: {"e": v},
        "email",
    ),
    "reportBroadcast-event-memberPbxId": Case(
        "agent_a",
        "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }",
        lambda w, v: _with_event(_report(w, None), memberPbxId=v),
        "events.0.memberPbxId",
    ),
    "registerInstallation-hostname": Case(
        None,
        'mutation($h: String!) { registerInstallation(licenseKey: "key-Owner AG", '
        'hostname: $h, agentVersion: "2.0") { __typename } }',
        lambda w, v: {"h": v},
        "hostname",
    ),
    "reportNotice-agentNumber": Case(
        "agent_a",
        "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }",
        lambda w, v: _notice(w, agent_number=v),
        "agentNumber",
    ),
}

TIME_CASES = {
    "broadcasts-filter-startedFrom": Case(
        "owner",
        "query($f: DateTime) { broadcasts(filter: {startedFrom: $f}) { nodes { id } } }",
        lambda w, v: {"f": v},
        "filter.startedFrom",
    ),
    "reportNotice-at": Case(
        "agent_a",
        "mutation($input: NoticeInput!) { reportNotice(input: $input) { stored } }",
        lambda w, v: _notice(w, at=v),
        "at",
    ),
    "reportHealth-reportedAt": Case(
        "agent_a",
        "mutation($input: HealthInput!) { reportHealth(input: $input) { pollIntervalSeconds } }",
        lambda w, v: {
            "input": {
                "agentVersion": "2.0",
                "pbxReachable": True,
                "alarmServiceOk": True,
                "participantCount": 1,
                "reportedAt": v,
            }
        },
        "reportedAt",
    ),
}


async def assert_refused(env: Env, case: Case, value: Any) -> dict[str, Any]:
    before = await env.rows()
    body = await env.post(case.token, case.query, **case.variables(env.world, value))
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == case.field, body
    assert await env.rows() == before, "a refused operation must write nothing"
    return body


@pytest.mark.parametrize("value", BAD_TEXTS)
@pytest.mark.parametrize("case", list(TEXT_CASES.values()), ids=list(TEXT_CASES))
async def test_it_refuses_control_characters_surrogates_and_long_texts_and_writes_nothing(
    env: Env, case: Case, value: str
) -> None:
    await assert_refused(env, case, value)


@pytest.mark.parametrize("case", list(TIME_CASES.values()), ids=list(TIME_CASES))
async def test_it_refuses_a_time_without_its_zone_and_writes_nothing(env: Env, case: Case) -> None:
    body = await assert_refused(env, case, NAIVE)
    assert "zone" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("where", "key", "limit", "field"),
    [
        ("report", "groupPbxId", 64, "groupPbxId"),
        ("report", "triggerCallerNumber", 64, "triggerCallerNumber"),
        ("report", "triggerCallerName", 200, "triggerCallerName"),
        ("event", "memberPbxId", 64, "events.0.memberPbxId"),
        ("event", "memberName", 200, "events.0.memberName"),
        ("event", "memberExtension", 32, "events.0.memberExtension"),
    ],
)
async def test_an_agent_report_text_longer_than_its_column_is_refused_and_writes_nothing(
    env: Env, where: str, key: str, limit: int, field: str
) -> None:
    """Under the guard's 4000 but over what PostgreSQL stores: "Unexpected error" before."""

    def variables(world: World, value: Any) -> dict[str, Any]:
        body = _report(world, None)
        target = body["input"] if where == "report" else body["input"]["events"][0]
        target[key] = value
        return body

    case = Case(
        "agent_a",
        "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }",
        variables,
        field,
    )
    await assert_refused(env, case, "7" * (limit + 1))


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
@pytest.mark.parametrize(
    "case",
    [
        TIME_CASES["broadcasts-filter-startedFrom"],
        Case(
            "agent_a",
            "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) "
            "{ lastSeq } }",
            lambda w, v: {"input": {**_report(w, None)["input"], "startedAt": v}},
            "startedAt",
        ),
    ],
    ids=["broadcasts-filter-startedFrom", "reportBroadcast-startedAt"],
)
async def test_it_refuses_a_time_that_does_not_exist_in_utc(env: Env, case: Case, at: str) -> None:
    await assert_refused(env, case, at)


async def test_it_refuses_a_nul_written_into_the_document_itself(env: Env) -> None:
    case = Case(
        "owner",
        'mutation { createGroup(name: "Tech\\u0000nik") { id } }',
        lambda w, v: {},
        "name",
    )
    await assert_refused(env, case, None)


async def test_a_refused_field_stops_the_whole_operation(env: Env) -> None:
    """Two mutations in one document: the clean first one does not run either."""
    case = Case(
        "owner",
        'mutation($d: String) { a: createGroup(name: "Eins") { id } '
        'b: createGroup(name: "Zwei", description: $d) { id } }',
        lambda w, v: {"d": v},
        "description",
    )
    body = await assert_refused(env, case, "Zwei\x00")
    assert body.get("data") is None


async def test_line_breaks_pass_only_where_the_field_takes_several_lines(env: Env) -> None:
    multi = "Achtung.\nBitte das Gebäude\tverlassen."
    body = await env.post(
        "owner",
        "mutation($g: ID!, $t: String!) { synthesizeAnnouncement(groupId: $g, kind: TEST, "
        "text: $t, language: DE) { announcement { text } } }",
        g=str(env.world.a.group_id),
        t=multi,
    )
    assert not body.get("errors"), body
    assert body["data"]["synthesizeAnnouncement"]["announcement"]["text"] == multi
    case = TEXT_CASES["createGroup-description"]
    body = await assert_refused(env, case, "Erste Zeile\nzweite Zeile")
    assert "line breaks" in body["errors"][0]["message"]


def _directory_with(name: str) -> dict[str, Any]:
    directory = world_directory()
    directory["users"][0]["name"] = name
    return directory


async def test_an_agents_result_and_error_from_the_pbx_are_stored_cleaned_not_refused(
    env: Env,
) -> None:
    """The exception (CLEANED): what an older agent reports from the PBX must not keep its
    command open; the service cleans it (docs/decisions/poison-results.md)."""
    complete = (
        "mutation($id: ID!, $ok: Boolean!, $r: JSON, $e: String) "
        "{ completeCommand(id: $id, ok: $ok, result: $r, error: $e) { status error } }"
    )
    create = 'mutation { createGroup(name: "Nachtschicht") { id } }'
    first, second = [
        (await env.post("owner", create))["data"]["createGroup"]["id"] for _ in range(2)
    ]
    directory = _directory_with("Max\x00Muster\ud800")
    body = await env.post("agent_a", complete, id=first, ok=True, r={"directory": directory})
    assert body["data"]["completeCommand"]["status"] == "SUCCEEDED", body
    async with env.rt.db.reading() as s:
        assert "Max\ufffdMuster\ufffd" in set(await s.scalars(select(PbxUser.name)))

    error = "Die Gruppe 'A\x00' gibt es schon\n" + "x" * 5000
    body = await env.post("agent_a", complete, id=second, ok=False, r={}, e=error)
    done = body["data"]["completeCommand"]
    assert done["status"] == "FAILED", body
    assert done["error"].startswith("Die Gruppe 'A\ufffd' gibt es schon")
    assert len(done["error"]) <= 4000


async def test_clean_texts_and_times_with_a_zone_pass(env: Env) -> None:
    body = await env.post(
        "owner", TEXT_CASES["createGroup-description"].query, d="Müller\u00a0GmbH 🚒"
    )
    assert not body.get("errors"), body
    body = await env.post("owner", TIME_CASES["broadcasts-filter-startedFrom"].query, f=AWARE)
    assert not body.get("errors"), body


# --------------------------------------------------------------------------- every argument


@dataclass(frozen=True)
class Target:
    """One place in the schema where an operation takes a text or a time."""

    operation: str  # query, mutation or subscription
    fields: tuple[str, ...]  # from the root to the field with the argument
    path: tuple[str | int, ...]  # argument name, then input fields and list positions
    named: str  # the scalar's name
    coordinate: str  # where the guard looks up its rules: Type.field(arg:) or Input.field

    @property
    def field(self) -> str:
        return self.fields[-1]

    @property
    def id(self) -> str:
        return f"{'.'.join(self.fields)}({'.'.join(map(str, self.path))})"


def _placeholder(type_: GraphQLInputType, path: tuple[str | int, ...], bad: Any) -> Any:
    """A value of `type_` that is valid everywhere but at `path`, where it is `bad`."""
    if not path:
        return bad
    if isinstance(type_, GraphQLNonNull):
        return _placeholder(type_.of_type, path, bad)
    if isinstance(type_, GraphQLList):
        assert path[0] == 0
        return [_placeholder(type_.of_type, path[1:], bad)]
    assert isinstance(type_, GraphQLInputObjectType)
    value = {name: _valid(f.type) for name, f in type_.fields.items() if _required(f)}
    key = str(path[0])
    value[key] = _placeholder(type_.fields[key].type, path[1:], bad)
    return value


def _required(item: GraphQLArgument | GraphQLInputField) -> bool:
    no_default = item.default_value is Undefined and getattr(item, "default", None) is None
    return isinstance(item.type, GraphQLNonNull) and no_default


def _valid(type_: GraphQLInputType) -> Any:
    if isinstance(type_, GraphQLNonNull):
        return _valid(type_.of_type)
    if isinstance(type_, GraphQLList):
        return []
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {name: _valid(f.type) for name, f in type_.fields.items() if _required(f)}
    assert isinstance(type_, GraphQLScalarType)
    return {
        "String": "x",
        "ID": str(uuid.uuid4()),
        "Int": 1,
        "Float": 1.0,
        "Boolean": True,
        "DateTime": AWARE,
        "JSON": {},
    }[type_.name]


def _targets(
    type_: GraphQLInputType, path: tuple[str | int, ...], coordinate: str
) -> Iterator[tuple[Any, ...]]:
    named = get_named_type(type_)
    if isinstance(type_, GraphQLNonNull):
        yield from _targets(type_.of_type, path, coordinate)
    elif isinstance(type_, GraphQLList):
        yield from _targets(type_.of_type, (*path, 0), coordinate)
    elif isinstance(named, GraphQLInputObjectType):
        for name, field in named.fields.items():
            yield from _targets(field.type, (*path, name), f"{named.name}.{name}")
    elif isinstance(named, GraphQLScalarType) and named.name not in {"Int", "Float", "Boolean"}:
        yield path, named.name, coordinate


def every_target(schema: GraphQLSchema | None = None) -> list[Target]:
    """Every argument of every field an operation can select, at any depth (arguments of
    nested object fields too), down to each text, ID, time and custom scalar in it."""
    schema = schema or build_schema()._schema
    found = []
    for operation in ("query", "mutation", "subscription"):
        root = schema.get_root_type(OperationType(operation))
        if root is None:
            continue
        # Breadth first, each object type once: its fields' arguments are the same
        # wherever it is reached.
        queue: list[tuple[GraphQLObjectType | GraphQLInterfaceType, tuple[str, ...]]] = [(root, ())]
        seen = {root.name}
        while queue:
            parent, chain = queue.pop(0)
            for field_name_, field in parent.fields.items():
                fields = (*chain, field_name_)
                for arg_name, arg in field.args.items():
                    coordinate = f"{parent.name}.{field_name_}({arg_name}:)"
                    for path, named, where in _targets(arg.type, (arg_name,), coordinate):
                        found.append(Target(operation, fields, path, named, where))
                inner = get_named_type(field.type)
                if isinstance(inner, GraphQLObjectType | GraphQLInterfaceType) and (
                    inner.name not in seen
                ):
                    seen.add(inner.name)
                    queue.append((inner, fields))
    return found


TARGETS = every_target()


def _bad_value(target: Target) -> Any:
    from schema.input_limits import DEFAULT_MAX_LENGTH, MAX_LENGTH, PBX_TEXT

    if target.coordinate in PBX_TEXT:  # cleaned by the service, but measured by the guard
        return "x" * (MAX_LENGTH.get(target.coordinate, DEFAULT_MAX_LENGTH) + 1)
    return {"DateTime": NAIVE, "JSON": {"k": "a\u202eb"}}.get(target.named, "a\x85b")


def _document(target: Target, schema: GraphQLSchema | None = None) -> tuple[str, dict[str, Any]]:
    schema = schema or build_schema()._schema
    parent: Any = schema.get_root_type(OperationType(target.operation))
    definitions, variables, selection = [], {}, ""
    levels = []
    for depth, name in enumerate(target.fields):
        field = parent.fields[name]
        arguments = []
        for arg_name, arg in field.args.items():
            last = depth == len(target.fields) - 1
            if last and arg_name == target.path[0]:
                value = _placeholder(arg.type, target.path[1:], _bad_value(target))
            elif _required(arg):
                value = _valid(arg.type)
            else:
                continue
            variable = f"v{depth}_{arg_name}"
            definitions.append(f"${variable}: {arg.type}")
            arguments.append(f"{arg_name}: ${variable}")
            variables[variable] = value
        levels.append(f"{name}({', '.join(arguments)})" if arguments else name)
        parent = get_named_type(field.type)
    selection = "" if isinstance(parent, GraphQLScalarType | GraphQLEnumType) else "{ __typename }"
    body = " ".join(f"{level} {{" for level in levels[:-1])
    body = f"{body} {levels[-1]} {selection} " + "}" * (len(levels) - 1)
    query = f"{target.operation}({', '.join(definitions)}) {{ {body} }}"
    return query, variables


def test_the_schema_has_texts_and_times_in_every_kind_of_place() -> None:
    """The walk below finds arguments, input fields, lists and custom scalars."""
    ids = {t.id for t in TARGETS}
    assert {"createGroup(description)", "reportBroadcast(input.events.0.detail)"} <= ids
    assert {"broadcasts(filter.startedFrom)", "completeCommand(result)"} <= ids
    assert {"commandUpdated(tenantId)"} <= ids  # a subscription's ID
    assert len(TARGETS) > 60


def test_every_special_field_of_the_guard_exists_in_the_schema() -> None:
    """An allow-list entry that names nothing would hide a renamed field's new default."""
    from schema.input_limits import CLEANED, MAX_LENGTH, MULTI_LINE, PBX_TEXT

    schema = build_schema()._schema
    for coordinate in {*MAX_LENGTH, *MULTI_LINE, *CLEANED, *PBX_TEXT}:
        type_name, _, rest = coordinate.partition(".")
        field, _, argument = rest.partition("(")
        owner = schema.get_type(type_name)
        assert isinstance(owner, GraphQLObjectType | GraphQLInputObjectType), coordinate
        assert field in owner.fields, coordinate
        if argument:
            assert argument.rstrip(":)") in owner.fields[field].args, coordinate


@pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])
async def test_every_text_and_time_argument_is_guarded(target: Target) -> None:
    """Each one, found by walking the schema, refused before any resolver runs: there is
    no request context here, so a resolver that ran would fail as an unexpected error."""
    from schema.input_limits import CLEANED

    if target.coordinate in CLEANED:
        pytest.skip("stored cleaned by its service, on purpose (see CLEANED)")
    query, variables = _document(target)
    schema = build_schema()
    if target.operation == "subscription":
        stream = await schema.subscribe(query, variable_values=variables)
        result = await anext(aiter(stream))
    else:
        result = await schema.execute(query, variable_values=variables)
    assert result.errors, query
    extensions = result.errors[0].extensions or {}
    assert (extensions.get("code"), extensions.get("field")) == (
        "BAD_USER_INPUT",
        ".".join(map(str, target.path[1:] if target.path[0] == "input" else target.path)),
    ), (query, variables, result.errors)


# --------------------------------------------------------------------------- work bounds


def _members_document(copies: int) -> str:
    fields = " ".join(["addGroupMembers(groupId: $g, userIds: $u) { id }"] * copies)
    return f"mutation($g: ID!, $u: [ID!]!) {{ {fields} }}"


def test_a_variable_repeated_by_many_fields_is_checked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The review's denial of service: 60 copies of one field sharing a 60,000-id list were
    60 times 60,000 checks (28 s on the event loop). Each variable is checked once per place."""
    from graphql import parse

    from api.domain import validation
    from schema.input_guard import refusal

    calls = 0
    checked = validation.input_text

    def counting(*args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        return checked(*args, **kwargs)

    monkeypatch.setattr(validation, "input_text", counting)
    schema = build_schema()._schema
    variables = {"g": str(uuid.uuid4()), "u": [f"u{i}" for i in range(1000)]}
    assert refusal(schema, parse(_members_document(60)), variables, None) is None
    assert calls == 1 + 1000  # the group's id and each member's, once


async def test_an_id_list_over_the_item_limit_is_refused_naming_it(env: Env) -> None:
    from schema.input_guard import MAX_ITEMS

    body = await env.post(
        "owner", _members_document(1), g=str(env.world.a.group_id), u=["a"] * (MAX_ITEMS + 1)
    )
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    extensions = body["errors"][0]["extensions"]
    assert (extensions["field"], extensions["reason"], extensions["max"]) == (
        "userIds",
        "tooManyItems",
        MAX_ITEMS,
    )


async def test_an_operation_over_the_work_limit_is_refused_as_a_bad_request(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lists under the item limit, but together more values than the guard checks."""
    import schema.input_guard

    monkeypatch.setattr(schema.input_guard, "MAX_VALUES", 250)
    query = (
        "mutation($g: ID!, $a: [ID!]!, $b: [ID!]!, $c: [ID!]!) { "
        "a: addGroupMembers(groupId: $g, userIds: $a) { id } "
        "b: addGroupMembers(groupId: $g, userIds: $b) { id } "
        "c: removeGroupMembers(groupId: $g, userIds: $c) { id } }"
    )
    ids = [str(uuid.uuid4()) for _ in range(100)]
    before = await env.rows()
    body = await env.post(None, query, g=str(env.world.a.group_id), a=ids, b=ids[:99], c=ids)
    assert error_codes(body) == ["BAD_REQUEST"], body
    assert body["errors"][0]["extensions"] == {
        "code": "BAD_REQUEST",
        "reason": "tooManyValues",
        "max": 250,
    }
    assert await env.rows() == before


# --------------------------------------------------------------------------- reasons


@pytest.mark.parametrize(
    ("value", "reason", "more"),
    [
        ("x" * 501, "tooLong", {"max": 500}),
        ("Tech\x00nik", "controlCharacter", {"character": "U+0000"}),
        ("Tech\x85nik", "controlCharacter", {"character": "U+0085"}),
        ("Erste\nzweite", "lineBreak", {"character": "U+000A"}),
        ("Erste\u2028zweite", "lineBreak", {"character": "U+2028"}),
        ("Tech\ud800nik", "loneSurrogate", {"character": "U+D800"}),
        ("Detail\u202etxt.exe", "invisibleCharacter", {"character": "U+202E"}),
        ("\ufeffTechnik", "invisibleCharacter", {"character": "U+FEFF"}),
        ("Tech\U000e0041nik", "invisibleCharacter", {"character": "U+E0041"}),
    ],
)
async def test_a_refusal_says_why_by_a_reason_code_the_website_words(
    env: Env, value: str, reason: str, more: dict[str, Any]
) -> None:
    """The group's description: 500 characters, as the service keeps (it used to cut)."""
    body = await assert_refused(env, TEXT_CASES["createGroup-description"], value)
    extensions = body["errors"][0]["extensions"]
    assert extensions == {
        "code": "BAD_USER_INPUT",
        "field": "description",
        "reason": reason,
        **more,
    }


async def test_a_time_without_its_zone_says_so_by_its_reason(env: Env) -> None:
    body = await assert_refused(env, TIME_CASES["broadcasts-filter-startedFrom"], NAIVE)
    assert body["errors"][0]["extensions"]["reason"] == "noTimeZone"


async def test_clean_texts_with_joiners_and_soft_hyphens_pass(env: Env) -> None:
    """Emoji sequences need the zero-width joiner; documents carry soft hyphens."""
    case = TEXT_CASES["createGroup-description"]
    body = await env.post("owner", case.query, d="Feuer\u00adwehr 👩\u200d🚒")
    assert not body.get("errors"), body


async def test_an_agent_version_over_its_column_is_refused_not_cut(env: Env) -> None:
    """reportHealth cut it to 64 characters before checking it."""
    case = TIME_CASES["reportHealth-reportedAt"]
    variables = case.variables(env.world, AWARE)
    variables["input"]["agentVersion"] = "2." + "9" * 63
    before = await env.rows()
    body = await env.post(case.token, case.query, **variables)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    extensions = body["errors"][0]["extensions"]
    assert (extensions["field"], extensions["reason"], extensions["max"]) == (
        "agentVersion",
        "tooLong",
        64,
    )
    assert await env.rows() == before


async def test_the_pbx_texts_of_a_report_are_stored_cleaned_and_the_detail_cut(env: Env) -> None:
    """What the PBX says is cleaned, never refused: an agent older than its own cleaning
    still gets its calls into the history (docs/decisions/input-guard.md)."""
    from api.models import Broadcast, CallAttempt

    body = _report(env.world, "Fehler\x00 " + "\u202e" + "x" * 5000)
    body["input"]["triggerCallerName"] = "Anrufer\u2066\uffff"
    body["input"]["note"] = "journalNotWritable\U000e0041"
    _with_event(body, memberName="An\u202ena\ud800")
    answer = await env.post(
        "agent_a",
        "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }",
        **body,
    )
    assert not answer.get("errors"), answer
    async with env.rt.db.reading() as s:
        broadcast = (
            await s.scalars(select(Broadcast).where(Broadcast.agent_broadcast_id == "guard-1"))
        ).one()
        attempt = (
            await s.scalars(select(CallAttempt).where(CallAttempt.broadcast_id == broadcast.id))
        ).one()
    assert attempt.member_name == "An\ufffdna\ufffd"
    assert attempt.detail is not None
    assert attempt.detail.startswith("Fehler\ufffd \ufffdxxx") and len(attempt.detail) == 2000
    assert broadcast.trigger_caller_name == "Anrufer\ufffd\ufffd"
    assert broadcast.note == "journalNotWritable\ufffd"


# --------------------------------------------------------------------------- nested fields


@strawberry.type
class NestedInner:
    @strawberry.field
    def echo(self, text: str, at: list[str] | None = None) -> str:
        return text


@strawberry.type
class NestedQuery:
    @strawberry.field
    def inner(self) -> NestedInner:
        return NestedInner()


def test_arguments_of_nested_fields_are_found_and_guarded() -> None:
    """No field of today's schema below the root takes arguments; the walk and the guard
    must still find one when it comes."""
    schema = strawberry.Schema(NestedQuery, extensions=[ErrorPolicy, InputGuard])
    targets = every_target(schema._schema)
    assert {t.id for t in targets} == {"inner.echo(text)", "inner.echo(at.0)"}
    for target in targets:
        query, variables = _document(target, schema._schema)
        result = schema.execute_sync(query, variable_values=variables)
        assert result.errors, query
        extensions = result.errors[0].extensions or {}
        assert (extensions["code"], extensions["field"]) == (
            "BAD_USER_INPUT",
            ".".join(map(str, target.path)),
        )


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (
            TIME_CASES["broadcasts-filter-startedFrom"].query,
            {"f": "2026-13-01T00:00:00Z"},
            "filter.startedFrom",
        ),
        (
            "query($f: BroadcastFilter) { broadcasts(filter: $f) { nodes { id } } }",
            {"f": {"startedTo": "gestern"}},
            "filter.startedTo",
        ),
    ],
    ids=["variable", "inside-an-input-variable"],
)
async def test_a_time_that_does_not_parse_is_refused_naming_its_field(
    env: Env, query: str, variables: dict[str, Any], field: str
) -> None:
    """It answered GRAPHQL_VALIDATION_FAILED ("this page no longer fits the server")."""
    body = await env.post("owner", query, **variables)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    extensions = body["errors"][0]["extensions"]
    assert (extensions["field"], extensions["reason"]) == (field, "notATime")
