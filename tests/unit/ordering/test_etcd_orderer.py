"""The etcd orderer against a real one-member etcd (Debian ``etcd-server``; `make etcd`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from carechain.errors import UnavailableError
from carechain.ordering.etcd import EtcdOrderer, decode_value, encode_value
from carechain.testing.cluster import ETCD_BIN, EtcdCluster, free_port

pytestmark = pytest.mark.skipif(
    not Path(ETCD_BIN).exists(), reason="etcd is not installed (make etcd)"
)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), size=1).start()
    yield cluster
    cluster.stop()


_chains = iter(range(10_000))


@pytest.fixture
def orderer(etcd: EtcdCluster) -> Iterator[EtcdOrderer]:
    o = EtcdOrderer(etcd.endpoints, chain=f"t{next(_chains)}", node="n1", clock=lambda: 1234)
    yield o
    o.close()


def test_value_framing_round_trips_and_foreign_values_carry_nothing() -> None:
    assert decode_value(encode_value(99, b"abc")) == (99, b"abc")
    assert decode_value(b"not a batch") == (0, b"")
    assert decode_value(b"") == (0, b"")


def test_positions_are_etcd_revisions_in_order(orderer: EtcdOrderer) -> None:
    p1, p2, p3 = (orderer.submit(x) for x in (b"one", b"two", b"three"))
    assert p1 < p2 < p3
    got = orderer.read(0)
    assert [(b.position, b.payload, b.timestamp) for b in got] == [
        (p1, b"one", 1234),
        (p2, b"two", 1234),
        (p3, b"three", 1234),
    ]
    assert [b.payload for b in orderer.read(p1)] == [b"two", b"three"]
    assert [b.payload for b in orderer.read(p1, limit=1)] == [b"two"]
    assert orderer.read(p3) == []


def test_submission_is_idempotent_across_retries_and_nodes(
    orderer: EtcdOrderer, etcd: EtcdCluster
) -> None:
    first = orderer.submit(b"batch")
    assert orderer.submit(b"batch") == first  # a retry after a timeout
    other = EtcdOrderer(etcd.endpoints, chain=orderer.prefix.decode().split("/")[2], node="n2")
    try:
        assert other.submit(b"batch") == first  # the same batch from another node
        assert [b.payload for b in other.read(0)] == [b"batch"]
    finally:
        other.close()


def test_read_waits_on_a_watch_for_the_next_batch(orderer: EtcdOrderer) -> None:
    head = orderer.submit(b"a")
    threading.Timer(0.3, orderer.submit, args=(b"b",)).start()
    started = time.monotonic()
    got = orderer.read(head, timeout=10)
    assert [b.payload for b in got] == [b"b"]
    assert time.monotonic() - started < 9  # woke on the event, not the timeout
    assert orderer.read(got[0].position, timeout=0.2) == []  # and times out when idle


def test_compaction_waits_for_every_member_and_then_refuses_old_readers(
    orderer: EtcdOrderer, etcd: EtcdCluster
) -> None:
    orderer.members = 2
    positions = [orderer.submit(b"x%d" % i) for i in range(5)]
    orderer.publish_applied(positions[3])
    assert orderer.compact() == 0  # the second member has not published yet: keep all
    assert len(orderer.read(0)) == 5
    chain = orderer.prefix.decode().split("/")[2]
    peer = EtcdOrderer(etcd.endpoints, chain=chain, node="n2", members=2)
    try:
        peer.publish_applied(positions[1])
        assert orderer.applied_positions() == {"n1": positions[3], "n2": positions[1]}
        assert orderer.compact() == positions[1]  # the smaller of the two
        assert [b.position for b in orderer.read(positions[1])] == positions[2:]
        fresh = EtcdOrderer(etcd.endpoints, chain=chain, node="n3")
        with pytest.raises(UnavailableError) as info:
            fresh.read(0)
        assert info.value.code == "history_compacted"
        fresh.close()
    finally:
        peer.close()


def test_a_reader_compacted_past_after_it_started_reading_is_refused_not_skipped(
    orderer: EtcdOrderer, etcd: EtcdCluster
) -> None:
    """A node the members do not count yet (an organisation admitted later) reads from its
    head; the members compact past that head meanwhile. Its next read must say
    ``history_compacted`` (it then catches up from peers), never return the batches after the
    deleted ones: that silently skipped a block and the node diverged (CI, test_consortium_join)."""
    orderer.members = 1
    positions = [orderer.submit(b"z%d" % i) for i in range(4)]
    chain = orderer.prefix.decode().split("/")[2]
    late = EtcdOrderer(etcd.endpoints, chain=chain, node="late")
    try:
        assert [b.position for b in late.read(positions[0], limit=1)] == [positions[1]]
        orderer.publish_applied(positions[2])
        assert orderer.compact() == positions[2]  # batches 1 and 2 deleted
        with pytest.raises(UnavailableError) as info:
            late.read(positions[0])
        assert info.value.code == "history_compacted"
        # negative control: reading from the boundary on is complete and allowed
        assert [b.position for b in late.read(positions[2])] == [positions[3]]
    finally:
        late.close()


def test_cosignature_board(orderer: EtcdOrderer) -> None:
    orderer.put_cosignature(7, b"note-1")
    assert orderer.cosignatures(7) == {"n1": b"note-1"}
    assert orderer.cosignatures(8) == {}


def test_no_cluster_means_a_clear_no_quorum_error() -> None:
    dead = EtcdOrderer(
        [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"],
        chain="x",
        node="n",
        timeout=0.5,
        attempt_timeout=0.2,
    )
    try:
        with pytest.raises(UnavailableError) as info:
            dead.submit(b"payload")
        assert info.value.code == "no_quorum"
        assert "nothing was ordered" in info.value.message
        with pytest.raises(UnavailableError):
            dead.read(0)
    finally:
        dead.close()


def test_a_dead_endpoint_is_skipped(etcd: EtcdCluster) -> None:
    o = EtcdOrderer([f"http://127.0.0.1:{free_port()}", *etcd.endpoints], chain="skip", node="n")
    try:
        assert o.submit(b"via the second endpoint") > 0
        assert o.status()[0]["up"] is False and o.status()[1]["up"] is True
    finally:
        o.close()


def test_compaction_racing_another_member_is_not_an_error(
    orderer: EtcdOrderer, etcd: EtcdCluster
) -> None:
    """Two members compact at once: the one whose ``low`` revision etcd already compacted past
    gets etcd's "required revision has been compacted" and treats it as done (it logged a
    misleading "could not publish applied position" warning before)."""
    orderer.members = 1
    positions = [orderer.submit(b"y%d" % i) for i in range(4)]
    orderer.publish_applied(positions[1])
    later = orderer.submit(b"later")
    orderer.call("/v3/kv/compaction", {"revision": str(later), "physical": False})  # the other
    with pytest.raises(UnavailableError) as info:  # control: etcd refuses the older revision
        orderer.call("/v3/kv/compaction", {"revision": str(positions[1]), "physical": False})
    assert info.value.code == "history_compacted"
    assert orderer.compact() == positions[1]  # and compact() takes that as done
    orderer.forget(positions[2])  # publishes without a warning-raising path (best effort)
    assert orderer.applied_positions()["n1"] == positions[2]
