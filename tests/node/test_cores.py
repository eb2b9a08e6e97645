"""The node's pure cores: addresses, back-off, probe state, pod status, environment, volumes, logs."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import PermanentError
from shoal.model.core import Container, Volume
from shoal.node.addresses import AddressAllocator, AddressesExhausted
from shoal.node.backoff import RestartBackoff, restart_wanted
from shoal.node.environment import (
    ContainerConfigError,
    container_command,
    container_env,
    expand,
    rewrite_path,
    service_env,
)
from shoal.node.listeners import listening_addresses, parse_proc_net_tcp
from shoal.node.logs import LogWriter, read_tail
from shoal.node.podstatus import (
    ContainerRecord,
    Running,
    Terminated,
    Waiting,
    pod_phase,
    pod_status,
)
from shoal.node.probes import ProbeState, ProbeTiming
from shoal.node.volumes import PodVolumes, VolumeError

# -- addresses ------------------------------------------------------------------------------------


def test_addresses_are_handed_out_in_order_never_127_0_0_1_and_kept_per_owner() -> None:
    allocator = AddressAllocator("127.0.0.0/30")
    assert allocator.allocate("a") == "127.0.0.2"  # .1 is skipped, .0 and .3 are not hosts
    assert allocator.allocate("a") == "127.0.0.2"
    with pytest.raises(AddressesExhausted):
        allocator.allocate("b")
    allocator.release("a")
    assert allocator.allocate("b") == "127.0.0.2"


def test_a_released_address_is_the_last_to_be_reused() -> None:
    allocator = AddressAllocator("127.1.0.0/29")
    first = allocator.allocate("a")
    allocator.allocate("b")
    allocator.release("a")
    assert allocator.allocate("c") != first


def test_reserve_takes_back_a_known_address_only_if_free_and_in_range() -> None:
    allocator = AddressAllocator("127.1.0.0/16")
    assert allocator.reserve("a", "127.1.0.9")
    assert allocator.get("a") == "127.1.0.9"
    assert not allocator.reserve("b", "127.1.0.9")
    assert not allocator.reserve("c", "10.0.0.1")
    assert not allocator.reserve("c", "not an ip")
    assert allocator.allocate("c") != "127.1.0.9"


def test_addresses_other_processes_listen_on_are_skipped() -> None:
    # Another node on the machine (a second cluster with the same range) holds .1 and .3.
    others = {"127.1.0.1", "127.1.0.3"}
    allocator = AddressAllocator("127.1.0.0/29", taken=lambda: frozenset(others))
    assert allocator.allocate("a") == "127.1.0.2"
    assert allocator.allocate("b") == "127.1.0.4"
    others.discard("127.1.0.1")  # checked again at each allocation
    assert [allocator.allocate(o) for o in "cde"] == ["127.1.0.5", "127.1.0.6", "127.1.0.1"]
    # Re-adoption keeps a pod's own address even while it is listening on it.
    others.add("127.1.0.3")
    readopting = AddressAllocator("127.1.0.0/29", taken=lambda: frozenset(others))
    assert readopting.reserve("x", "127.1.0.3")
    assert len({readopting.allocate(str(owner)) for owner in range(5)}) == 5
    with pytest.raises(AddressesExhausted, match="other processes"):
        readopting.allocate("one too many")


def test_listening_addresses_come_from_proc_net_tcp() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
        "   0: 0500017F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0\n"
        "   1: 0100007F:1F91 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0\n"
        "   2: garbage\n"
    )
    assert parse_proc_net_tcp(table) == frozenset({"127.1.0.5"})


def test_a_real_listener_is_seen() -> None:
    with socket.socket() as listener:
        listener.bind(("127.1.0.250", 0))
        listener.listen()
        assert "127.1.0.250" in listening_addresses()
    assert "127.1.0.250" not in listening_addresses()


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "nonsense", "127.0.0.1/32"])
def test_a_bad_pod_cidr_is_a_permanent_error(cidr: str) -> None:
    with pytest.raises(PermanentError):
        AddressAllocator(cidr)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9)), max_size=60))
def test_addresses_are_never_shared(operations: list[tuple[bool, int]]) -> None:
    allocator = AddressAllocator("127.1.0.0/28")
    for allocate, owner in operations:
        if allocate:
            allocator.allocate(str(owner))
        else:
            allocator.release(str(owner))
        held = [allocator.get(str(o)) for o in range(10)]
        addresses = [a for a in held if a is not None]
        assert len(addresses) == len(set(addresses))
        assert "127.0.0.1" not in addresses


# -- back-off -------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_to_the_cap_and_resets_after_a_long_run() -> None:
    backoff = RestartBackoff(base=10, cap=300, reset_after=600)
    delays = [backoff.after_exit(ran_for=1) for _ in range(7)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert backoff.after_exit(ran_for=600) == 10
    assert backoff.after_exit(ran_for=1) == 20


@pytest.mark.parametrize(
    ("policy", "code", "wanted"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, code: int, wanted: bool) -> None:
    assert restart_wanted(policy, code) is wanted


# -- probes ---------------------------------------------------------------------------------------


def passing(probe: ProbeState) -> bool:
    return probe.passing  # a call, so mypy does not narrow the property between asserts


def test_readiness_probe_transcript() -> None:
    timing = ProbeTiming(initial_delay=5, period=10, success_threshold=2, failure_threshold=3)
    probe = ProbeState("readiness", timing, started_at=100.0, fast_interval=1.0)
    assert probe.next_run() == 105  # initial delay
    assert not passing(probe)
    assert probe.record(False, 105) is False  # not ready yet: any failure says so
    assert probe.next_run() == 106  # polled fast until the first success
    assert probe.record(True, 106) is None  # 1 of 2 successes
    assert probe.next_run() == 116  # the real period from now on
    assert probe.record(True, 116) is True
    assert passing(probe)
    assert probe.record(False, 126) is None
    assert probe.record(False, 136) is None
    assert probe.record(False, 146) is False  # three failures in a row
    assert not passing(probe)


def test_liveness_passes_until_failure_threshold() -> None:
    probe = ProbeState("liveness", ProbeTiming(period=1, failure_threshold=2), started_at=0.0)
    assert passing(probe)
    assert probe.record(False, 0) is None
    assert probe.record(True, 1) is True
    assert probe.record(False, 2) is None
    assert probe.record(False, 3) is False


def test_startup_is_not_polled_fast() -> None:
    probe = ProbeState("startup", ProbeTiming(period=3), started_at=0.0, fast_interval=0.1)
    probe.record(False, 0)
    assert probe.next_run() == 3
    assert not passing(probe)


# -- pod status -----------------------------------------------------------------------------------


def _terminated(code: int) -> Terminated:
    return Terminated(code, "Completed" if code == 0 else "Error", "t0", "t1")


@pytest.mark.parametrize(
    ("states", "policy", "phase"),
    [
        ([Waiting()], "Always", "Pending"),
        ([Running("t"), Waiting()], "Always", "Pending"),
        ([Running("t"), _terminated(0)], "Never", "Running"),
        ([_terminated(0), _terminated(0)], "Never", "Succeeded"),
        ([_terminated(0), _terminated(1)], "Never", "Failed"),
        ([_terminated(1)], "Always", "Running"),
        ([_terminated(1)], "OnFailure", "Running"),
        ([_terminated(0)], "OnFailure", "Succeeded"),
    ],
)
def test_phase_as_the_kubelet_computes_it(states: list[Any], policy: str, phase: str) -> None:
    records = [ContainerRecord(f"c{i}", state=s) for i, s in enumerate(states)]
    assert pod_phase(records, policy) == phase


def test_a_container_in_back_off_counts_as_stopped() -> None:
    record = ContainerRecord("c", state=Waiting("CrashLoopBackOff"), last_terminated=_terminated(1))
    assert pod_phase([record], "Always") == "Running"


def test_status_conditions_and_transition_times() -> None:
    ready = ContainerRecord("a", state=Running("t0"), ready=True, started=True)
    unready = ContainerRecord("b", state=Running("t0"), started=True)
    common: dict[str, Any] = {
        "restart_policy": "Always",
        "pod_ip": "127.1.0.1",
        "host_ip": "127.0.0.1",
        "start_time": "t0",
    }
    first = pod_status([ready, unready], now="T1", **common)
    conditions = {c["type"]: c for c in first["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    assert conditions["Ready"]["message"] == "containers with unready status: [b]"
    assert first["podIP"] == "127.1.0.1"
    assert first["podIPs"] == [{"ip": "127.1.0.1"}]
    assert first["phase"] == "Running"
    unready.ready = True
    second = pod_status([ready, unready], now="T2", previous=first, **common)
    conditions = {c["type"]: c for c in second["conditions"]}
    assert conditions["Ready"] == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": "T2",
    }
    assert conditions["PodScheduled"]["lastTransitionTime"] == "T1"  # did not flip
    terminating = pod_status(
        [ready, unready], now="T3", previous=second, terminating=True, **common
    )
    assert {c["type"]: c["status"] for c in terminating["conditions"]}["Ready"] == "False"
    statuses = terminating["containerStatuses"]
    assert [s["name"] for s in statuses] == ["a", "b"]


def test_container_status_shapes() -> None:
    record = ContainerRecord(
        "c",
        state=Waiting("CrashLoopBackOff", "back-off 10s"),
        last_terminated=Terminated(137, "Error", "t0", "t1", signal=9),
        restart_count=3,
    )
    status = pod_status(
        [record], restart_policy="Always", pod_ip=None, host_ip="h", start_time="s", now="n"
    )["containerStatuses"][0]
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert status["lastState"] == {
        "terminated": {
            "exitCode": 137,
            "reason": "Error",
            "startedAt": "t0",
            "finishedAt": "t1",
            "signal": 9,
        }
    }
    assert status["restartCount"] == 3


# -- environment ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x$(A)y$(B)", "x1y2"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("a$b", "a$b"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("end$", "end$"),
    ],
)
def test_expansion_as_kubernetes_does_it(text: str, expected: str) -> None:
    values = {"A": "1", "B": "2"}
    assert expand(text, values.get) == expected


@given(st.text(alphabet="$()AB xy", max_size=30))
def test_expansion_without_references_is_identity_modulo_escapes(text: str) -> None:
    assert expand(text, lambda _: None).replace("$", "") == text.replace("$", "")


def test_service_env_skips_services_without_a_cluster_ip() -> None:
    services = [
        {
            "metadata": {"name": "my-service"},
            "spec": {
                "clusterIP": "127.0.100.1",
                "ports": [{"name": "http", "port": 80}, {"name": "admin-port", "port": 9000}],
            },
        },
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
        {"metadata": {"name": "pending"}, "spec": {"ports": [{"port": 1}]}},
    ]
    env = service_env(services)
    assert env["MY_SERVICE_SERVICE_HOST"] == "127.0.100.1"
    assert env["MY_SERVICE_SERVICE_PORT"] == "80"
    assert env["MY_SERVICE_SERVICE_PORT_HTTP"] == "80"
    assert env["MY_SERVICE_SERVICE_PORT_ADMIN_PORT"] == "9000"
    assert env["MY_SERVICE_PORT"] == "tcp://127.0.100.1:80"
    assert env["MY_SERVICE_PORT_9000_TCP_ADDR"] == "127.0.100.1"
    assert not any(k.startswith(("HEADLESS", "PENDING")) for k in env)


def test_paths_under_a_mount_are_rewritten() -> None:
    mounts = {"/etc/app": "/data/v/config", "/etc/app/certs": "/data/v/certs", "/": "/data/root"}
    assert rewrite_path("/etc/app/x.yaml", mounts) == "/data/v/config/x.yaml"
    assert rewrite_path("/etc/app", mounts) == "/data/v/config"
    assert rewrite_path("/etc/app/certs/ca", mounts) == "/data/v/certs/ca"
    assert rewrite_path("--config=/etc/app/x", mounts) == "--config=/data/v/config/x"
    assert rewrite_path("/etc/application", {"/etc/app": "/d"}) == "/etc/application"
    assert rewrite_path("relative/etc/app", {"/etc/app": "/d"}) == "relative/etc/app"


POD: dict[str, Any] = {
    "metadata": {
        "name": "web-1",
        "namespace": "shop",
        "uid": "u-1",
        "labels": {"app": "web"},
    },
    "spec": {"nodeName": "n1"},
    "status": {"podIP": "127.1.0.5", "hostIP": "127.0.0.1"},
}

CONFIG = {"data": {"mode": "fast", "LEVEL": "debug"}}
SECRET = {"data": {"password": base64.b64encode(b"hunter2").decode()}}


def _lookup(objects: dict[str, dict[str, Any]]) -> Any:
    return lambda namespace, name: objects.get(f"{namespace}/{name}")


def test_container_env_precedence_references_and_sources() -> None:
    container = Container.model_validate(
        {
            "name": "app",
            "command": ["serve", "--mode=$(MODE)", "$(POD_IP):8080", "/etc/app/conf.yaml"],
            "args": ["$(UNDEFINED)", "$$(POD_IP)"],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "password"}},
                },
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "URL", "value": "http://$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)/$(MODE)"},
                {"name": "CONF", "value": "/etc/app/conf.yaml"},
                {"name": "PATH", "value": "/override"},
            ],
        }
    )
    services = [
        {
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "127.0.100.2", "ports": [{"port": 5432}]},
        }
    ]
    env = container_env(
        POD,
        container,
        base={"PATH": "/usr/bin", "HOME": "/home/x"},
        node_vars={"POD_IP": "127.1.0.5"},
        services=services,
        config_maps=_lookup({"shop/cfg": CONFIG}),
        secrets=_lookup({"shop/s": SECRET}),
        mounts={"/etc/app": "/node/pods/u-1/volumes/config"},
    )
    assert env["CFG_mode"] == "fast"
    assert env["CFG_LEVEL"] == "debug"
    assert env["MODE"] == "fast"
    assert env["PASSWORD"] == "hunter2"
    assert env["NAME"] == "web-1"
    assert env["APP"] == "web"
    assert env["IP"] == "127.1.0.5"
    assert env["URL"] == "http://127.0.100.2:5432/fast"
    assert env["CONF"] == "/node/pods/u-1/volumes/config/conf.yaml"
    assert env["PATH"] == "/override"
    assert env["HOME"] == "/home/x"
    argv = container_command(
        container, env, {"/etc/app": "/node/pods/u-1/volumes/config"}, python=["/py"]
    )
    assert argv == [
        "serve",
        "--mode=fast",
        "127.1.0.5:8080",
        "/node/pods/u-1/volumes/config/conf.yaml",
        "$(UNDEFINED)",
        "$(POD_IP)",
    ]


def test_shoal_commands_run_with_the_nodes_interpreter() -> None:
    container = Container(name="c", command=["shoal", "proxy"], args=["--port", "1"])
    assert container_command(container, {}, {}, python=["/venv/python3"]) == [
        "/venv/python3",
        "-m",
        "shoal",
        "proxy",
        "--port",
        "1",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}},
            'configmap "nope" not found',
        ),
        (
            {"valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
            'key k in configmap "cfg"',
        ),
        ({"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}, 'key k in secret "s"'),
    ],
)
def test_missing_references_are_config_errors(env: dict[str, Any], message: str) -> None:
    container = Container.model_validate(
        {"name": "c", "command": ["x"], "env": [{"name": "V", **env}]}
    )
    with pytest.raises(ContainerConfigError, match=message):
        container_env(
            POD,
            container,
            base={},
            node_vars={},
            services=[],
            config_maps=_lookup({"shop/cfg": CONFIG}),
            secrets=_lookup({"shop/s": SECRET}),
            mounts={},
        )


def test_optional_references_may_be_missing() -> None:
    container = Container.model_validate(
        {
            "name": "c",
            "command": ["x"],
            "env": [
                {
                    "name": "V",
                    "valueFrom": {"configMapKeyRef": {"name": "no", "key": "k", "optional": True}},
                }
            ],
            "envFrom": [{"secretRef": {"name": "none", "optional": True}}],
        }
    )
    env = container_env(
        POD,
        container,
        base={},
        node_vars={},
        services=[],
        config_maps=_lookup({}),
        secrets=_lookup({}),
        mounts={},
    )
    assert "V" not in env


# -- volumes --------------------------------------------------------------------------------------


def _volumes(tmp_path: Path) -> PodVolumes:
    volumes = [
        Volume.model_validate({"name": "scratch", "emptyDir": {}}),
        Volume.model_validate({"name": "config", "configMap": {"name": "cfg"}}),
        Volume.model_validate(
            {
                "name": "creds",
                "secret": {
                    "secretName": "s",
                    "defaultMode": 0o400,
                    "items": [{"key": "password", "path": "db/password"}],
                },
            }
        ),
    ]
    return PodVolumes(tmp_path / "volumes", volumes)


def test_volumes_are_materialized_with_modes_and_swapped_atomically(tmp_path: Path) -> None:
    volumes = _volumes(tmp_path)
    config = {"shop/cfg": {"data": {"a.yaml": "one", "b": "two"}}}
    changed = volumes.sync("shop", _lookup(config), _lookup({"shop/s": SECRET}))
    assert changed == ["scratch", "config", "creds"]
    root = volumes.path("config")
    assert (root / "a.yaml").read_text() == "one"
    assert (root / "a.yaml").is_symlink()
    assert os.readlink(root / "a.yaml") == "..data/a.yaml"
    first = os.readlink(root / "..data")
    assert (volumes.path("creds") / "db" / "password").read_text() == "hunter2"
    assert ((volumes.path("creds") / "db" / "password").stat().st_mode & 0o777) == 0o400
    assert ((root / "b").stat().st_mode & 0o777) == 0o644
    assert volumes.sync("shop", _lookup(config), _lookup({"shop/s": SECRET})) == []
    config["shop/cfg"] = {"data": {"a.yaml": "uno"}}
    assert volumes.sync("shop", _lookup(config), _lookup({"shop/s": SECRET})) == ["config"]
    assert (root / "a.yaml").read_text() == "uno"
    assert not (root / "b").exists()
    assert os.readlink(root / "..data") != first
    assert not (root / first).exists()
    container = Container.model_validate(
        {
            "name": "c",
            "command": ["x"],
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "creds", "mountPath": "/etc/creds", "subPath": "db"},
            ],
        }
    )
    assert volumes.mounts(container) == {
        "/etc/app": str(root),
        "/etc/creds": str(volumes.path("creds") / "db"),
    }
    volumes.remove()
    assert not (tmp_path / "volumes").exists()


def test_a_missing_config_map_is_a_volume_error_but_the_others_are_written(tmp_path: Path) -> None:
    volumes = _volumes(tmp_path)
    with pytest.raises(VolumeError, match='volume "config": configmap "cfg" not found'):
        volumes.sync("shop", _lookup({}), _lookup({"shop/s": SECRET}))
    assert volumes.path("scratch").is_dir()
    assert (volumes.path("creds") / "db" / "password").exists()


# -- logs -----------------------------------------------------------------------------------------


def test_logs_rotate_by_size_and_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    writer = LogWriter(path, max_bytes=20, backups=1)
    writer.write(b"line one\nline two\nline three\n")
    writer.write(b"line four\n")
    writer.close()
    rotated = path.with_name("c.log.1")
    assert rotated.exists()
    assert rotated.read_bytes() == b"line three\n"
    assert path.read_bytes() == b"line four\n"
    assert all(len(p.read_bytes()) <= 20 for p in (path, rotated))
    assert read_tail(path, 1) == b"line four\n"
    assert read_tail(path, 0) == b""
    assert b"line three\n" in read_tail(path, None)
