"""The service proxy's plan: which listeners, with which endpoints, as kube-proxy would choose."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from shoal.cluster.services import SERVICE_NAME_LABEL, ServiceListener, plan_services


def service(
    name: str,
    cluster_ip: str | None = "127.2.0.5",
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80}], **spec},
    }
    if cluster_ip is not None:
        body["spec"]["clusterIP"] = cluster_ip
    return body


def endpoint(ip: str, ready: bool | None = True, terminating: bool = False) -> dict[str, Any]:
    conditions: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
        conditions["serving"] = ready
    return {"addresses": [ip], "conditions": conditions}


def endpoint_slice(
    service_name: str,
    endpoints: list[dict[str, Any]],
    port: int = 8080,
    port_name: str = "http",
    namespace: str = "default",
    name: str | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name or f"{service_name}-abc",
            "namespace": namespace,
            "labels": {SERVICE_NAME_LABEL: service_name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


def test_ready_endpoints_of_the_matching_port_name_are_served() -> None:
    plan = plan_services(
        [service("web")],
        [endpoint_slice("web", [endpoint("127.1.0.2"), endpoint("127.1.0.3", ready=False)])],
    )
    assert plan.listeners == (
        ServiceListener(
            namespace="default",
            service="web",
            port_name="http",
            host="127.2.0.5",
            port=80,
            endpoints=(("127.1.0.2", 8080),),
        ),
    )
    assert plan.listeners[0].name == "default/web:http"


def test_a_missing_ready_condition_counts_as_ready() -> None:
    plan = plan_services([service("web")], [endpoint_slice("web", [endpoint("127.1.0.9", None)])])
    assert plan.listeners[0].endpoints == (("127.1.0.9", 8080),)


def test_terminating_endpoints_serve_only_when_none_is_ready() -> None:
    draining = endpoint("127.1.0.4", ready=False, terminating=True)
    draining["conditions"]["serving"] = True
    with_ready = plan_services(
        [service("web")], [endpoint_slice("web", [draining, endpoint("127.1.0.5")])]
    )
    assert with_ready.listeners[0].endpoints == (("127.1.0.5", 8080),)
    alone = plan_services([service("web")], [endpoint_slice("web", [draining])])
    assert alone.listeners[0].endpoints == (("127.1.0.4", 8080),)


def test_no_endpoints_still_gets_a_listener_that_can_answer_503() -> None:
    plan = plan_services([service("web")], [])
    assert plan.listeners[0].endpoints == ()


def test_headless_and_unallocated_services_get_no_listener() -> None:
    plan = plan_services([service("a", cluster_ip="None"), service("b", cluster_ip=None)], [])
    assert plan.listeners == ()


def test_slices_of_other_namespaces_and_services_are_ignored() -> None:
    plan = plan_services(
        [service("web")],
        [
            endpoint_slice("web", [endpoint("127.1.0.7")], namespace="other"),
            endpoint_slice("api", [endpoint("127.1.0.8")]),
        ],
    )
    assert plan.listeners[0].endpoints == ()


def test_udp_ports_are_skipped_with_a_reason() -> None:
    plan = plan_services(
        [service("dns", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}])], []
    )
    assert plan.listeners == ()
    assert plan.skipped == (
        "default/dns:dns: protocol UDP is not served on one machine (TCP only)",
    )


def test_unnamed_ports_and_several_slices_merge() -> None:
    plan = plan_services(
        [service("web", ports=[{"port": 80}], sessionAffinity="ClientIP")],
        [
            endpoint_slice("web", [endpoint("127.1.0.2")], port_name="", name="web-1"),
            endpoint_slice("web", [endpoint("127.1.0.3")], port_name="", name="web-2"),
        ],
    )
    (listener,) = plan.listeners
    assert listener.endpoints == (("127.1.0.2", 8080), ("127.1.0.3", 8080))
    assert listener.affinity == "ClientIP"
    assert listener.name == "default/web:80"


_ips = st.integers(min_value=2, max_value=60).map(lambda n: f"127.1.0.{n}")


@given(
    st.lists(st.tuples(_ips, st.sampled_from([True, False, None]), st.booleans()), max_size=12),
    st.randoms(),
)
def test_the_plan_does_not_depend_on_input_order(
    raw: list[tuple[str, bool | None, bool]], rng: Any
) -> None:
    endpoints = [endpoint(ip, ready, terminating) for ip, ready, terminating in raw]
    slices = [endpoint_slice("web", endpoints[i::2], name=f"web-{i}") for i in range(2)]
    services = [service("web"), service("api", cluster_ip="127.2.0.6")]
    first = plan_services(services, slices)
    rng.shuffle(slices)
    rng.shuffle(services)
    assert plan_services(services, slices) == first
    web = next(listener for listener in first.listeners if listener.service == "web")
    ready = {
        (ip, 8080) for ip, is_ready, terminating in raw if is_ready is not False and not terminating
    }
    if ready:
        assert set(web.endpoints) == ready
