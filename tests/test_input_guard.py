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
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
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
from schema.schema import build_schema
from tests.conftest import SECRET_KEY, Clock, error_codes
from tests.test_agent_service import world_directory
from tests.world import World, build_world

NAIVE = "2026-12-07T09:00:00"
AWARE = "2026-12-07T09:00:00Z"
BAD_TEXTS = [
    pytest.param("Tech\x00nik", id="nul"),
    pytest.param("Tech\x1bnik", id="escape"),
    pytest.param("Tech\ud800nik", id="lone-surrogate"),
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
    "reportBroadcast-event-detail": Case(
        "agent_a",
        "mutation($input: BroadcastReportInput!) { reportBroadcast(input: $input) { lastSeq } }",
        _report,
        "events.0.detail",
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
    field: str
    path: tuple[str | int, ...]  # argument name, then input fields and list positions
    named: str  # the scalar's name

    @property
    def id(self) -> str:
        return f"{self.field}({'.'.join(map(str, self.path))})"


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


def _targets(type_: GraphQLInputType, path: tuple[str | int, ...]) -> Iterator[tuple[Any, ...]]:
    named = get_named_type(type_)
    if isinstance(type_, GraphQLNonNull):
        yield from _targets(type_.of_type, path)
    elif isinstance(type_, GraphQLList):
        yield from _targets(type_.of_type, (*path, 0))
    elif isinstance(named, GraphQLInputObjectType):
        for name, field in named.fields.items():
            yield from _targets(field.type, (*path, name))
    elif isinstance(named, GraphQLScalarType) and named.name not in {"Int", "Float", "Boolean"}:
        yield path, named.name


def every_target() -> list[Target]:
    schema = build_schema()._schema
    found = []
    for operation in ("query", "mutation", "subscription"):
        root = schema.get_root_type(OperationType(operation))
        assert isinstance(root, GraphQLObjectType)
        for field_name_, field in root.fields.items():
            for arg_name, arg in field.args.items():
                for path, named in _targets(arg.type, (arg_name,)):
                    found.append(Target(operation, field_name_, path, named))
    return found


TARGETS = every_target()


def _bad_value(target: Target) -> Any:
    return {"DateTime": NAIVE, "JSON": {"k": "a\x00b"}}.get(target.named, "a\x00b")


def _document(target: Target) -> tuple[str, dict[str, Any]]:
    schema = build_schema()._schema
    root = schema.get_root_type(OperationType(target.operation))
    assert root is not None
    field = root.fields[target.field]
    definitions, arguments, variables = [], [], {}
    for name, arg in field.args.items():
        if name == target.path[0]:
            value = _placeholder(arg.type, target.path[1:], _bad_value(target))
        elif _required(arg):
            value = _valid(arg.type)
        else:
            continue
        definitions.append(f"${name}: {arg.type}")
        arguments.append(f"{name}: ${name}")
        variables[name] = value
    selection = (
        "" if isinstance(get_named_type(field.type), GraphQLScalarType) else "{ __typename }"
    )
    query = (
        f"{target.operation}({', '.join(definitions)}) "
        f"{{ {target.field}({', '.join(arguments)}) {selection} }}"
    )
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
    from schema.input_guard import CLEANED, MAX_LENGTH, MULTI_LINE

    schema = build_schema()._schema
    for coordinate in {*MAX_LENGTH, *MULTI_LINE, *CLEANED}:
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
    from schema.input_guard import CLEANED

    coordinate = f"{target.operation.title()}.{target.field}({target.path[0]}:)"
    if coordinate in CLEANED:
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
