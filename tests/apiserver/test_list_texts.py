"""List answers spliced from the stored JSON texts (``records.item_text``): the same objects as
decoding each item and setting its resourceVersion, and a decode fallback whenever the text is
not in the form the store writes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.apiserver.records import encode, item_text
from shoal.testing import api_server

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


def decoded_path(raw: str, revision: int, api_version: str) -> dict[str, Any]:
    """What the server answers when it decodes the item (``ObjectService.output``)."""
    value: dict[str, Any] = json.loads(raw)
    value["apiVersion"] = api_version
    value.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return value


@given(
    kind=st.text(min_size=1, max_size=12),
    metadata=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "resourceVersion"), JSON, max_size=4
    ),
    rest=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in ("apiVersion", "kind", "metadata")),
        JSON,
        max_size=4,
    ),
    revision=st.integers(2, 10**12),
)
@settings(max_examples=300, deadline=None)
def test_spliced_text_is_the_decoded_object(
    kind: str, metadata: dict[str, Any], rest: dict[str, Any], revision: int
) -> None:
    stored = encode({**rest, "metadata": metadata, "kind": kind, "apiVersion": "old/v1"})
    text = item_text(stored, revision, "example.com/v1")
    if text is None:  # a kind or key that needs escaping, or a resourceVersion somewhere
        assert '"resourceVersion":' in stored or '"' in json.dumps(kind)[1:-1] or "\\" in stored
        return
    assert json.loads(text) == decoded_path(stored, revision, "example.com/v1")


def test_texts_not_in_the_stored_form_fall_back_to_decoding() -> None:
    assert item_text('{"kind":"A","apiVersion":"v1","metadata":{}}', 3, "v1") is None
    assert item_text('{"apiVersion":"v1","metadata":{"name":"x"}}', 3, "v1") is None
    event = encode(
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p", "resourceVersion": "12"},
        }
    )
    assert item_text(event, 3, "v1") is None
    assert item_text(encode({"apiVersion": "v1", "kind": "A", "metadata": {}}), 3, 'v"1') is None


def test_the_store_writes_the_head_first() -> None:
    stored = encode({"data": {}, "metadata": {"name": "x"}, "kind": "K", "apiVersion": "v1"})
    assert stored.startswith('{"apiVersion":"v1","kind":"K","metadata":{')
    assert encode({"a": 1}) == '{"a":1}'  # not an object: left alone


async def test_lists_over_http_equal_the_objects_read_one_by_one() -> None:
    events = "/api/v1/namespaces/default/events"
    configmaps = "/api/v1/namespaces/default/configmaps"
    async with api_server() as server, server.session() as session:
        for i in range(5):
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "labels": {"n": str(i)}},
                "data": {"text": 'quotes " and \\ and ünïcode'},
            }
            async with session.post(server.url + configmaps, json=body) as r:
                assert r.status == 201
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e1"},
            "involvedObject": {"kind": "ConfigMap", "name": "c1", "resourceVersion": "3"},
            "reason": "Tested",
        }
        async with session.post(server.url + events, json=event) as r:
            assert r.status == 201, await r.text()
        for path in (configmaps, events):
            async with session.get(server.url + path) as r:
                assert r.status == 200
                assert r.content_type == "application/json"
                listed = await r.json()
            assert listed["kind"].endswith("List")
            for item in listed["items"]:
                async with session.get(f"{server.url}{path}/{item['metadata']['name']}") as r:
                    assert await r.json() == item
        # Pages: the continue token and every item once.
        names: list[str] = []
        token = ""
        while True:
            url = f"{server.url}{configmaps}?limit=2" + (f"&continue={token}" if token else "")
            async with session.get(url) as r:
                page = await r.json()
            names += [item["metadata"]["name"] for item in page["items"]]
            token = page["metadata"].get("continue", "")
            if not token:
                break
        assert names == [f"c{i}" for i in range(5)]
        # The short alias group answers with its own apiVersion.
        async with session.get(server.url + "/apis/loadtest/v1/loadtests") as r:
            assert (await r.json())["apiVersion"] == "loadtest/v1"


async def test_watch_events_written_from_stored_texts_equal_the_objects() -> None:
    """Plain watches write each event from the stored text; the objects are the ones a GET
    answers (modified and deleted ones too), and a text that needs decoding is decoded."""
    configmaps = "/api/v1/namespaces/default/configmaps"
    merge = {"Content-Type": "application/merge-patch+json"}
    async with api_server() as server, server.session() as session:
        async with session.get(server.url + configmaps) as r:
            start = (await r.json())["metadata"]["resourceVersion"]
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "w"},
            "data": {"resourceVersion": "not a key"},
        }
        async with session.post(server.url + configmaps, json=body) as r:
            created = await r.json()
        async with session.patch(
            f"{server.url}{configmaps}/w", json={"data": {"b": "2"}}, headers=merge
        ) as r:
            patched = await r.json()
        async with session.delete(f"{server.url}{configmaps}/w") as r:
            assert r.status == 200
        events = []
        params = {"watch": "1", "resourceVersion": start, "timeoutSeconds": "5"}
        async with session.get(server.url + configmaps, params=params) as r:
            async for line in r.content:
                events.append(json.loads(line))
                if len(events) == 3:
                    break
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        assert events[0]["object"] == created
        assert events[1]["object"] == patched
        assert events[2]["object"]["metadata"]["name"] == "w"
        assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(
            patched["metadata"]["resourceVersion"]
        )
