from pathlib import Path

from schema.schema import sdl

SNAPSHOT = Path(__file__).resolve().parent.parent / "schema" / "schema.graphql"


def test_the_committed_sdl_matches_the_schema():
    assert SNAPSHOT.read_text() == sdl(), (
        "schema/schema.graphql is out of date: run `rundruf schema > schema/schema.graphql`"
    )
