"""The gRPC ingestion service against a real broker: nothing lost, nothing doubled, nothing invalid published.

This is the conformance suite: every test taking ``server``, ``serve`` or
``serve_command`` runs twice, against the Python server (in-process,
``IngestionServer``) and the Go gateway (a child process, ``GatewayServer``),
and asserts the same codes, messages and records of both. Where a real
process must receive SIGTERM it is ``fraudlab serve --engine ...``. Clients
are plain synchronous gRPC stubs, or fraudlab's producer for streams.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from ingest_helpers import produce_in_background as _produce_in_background
from ingest_helpers import read_all as _read_all
from ingest_helpers import stub as _stub
from ingest_helpers import tx as _tx

from fraudlab.cli import cli
from fraudlab.exceptions import FraudlabError, ProducerError, ServiceError
from fraudlab.infra.broker import start_broker, stop_broker
from fraudlab.infra.process import free_port
from fraudlab.ingest.channel import check_health
from fraudlab.ingest.client import ProducerSettings, produce
from fraudlab.ingest.gateway import GatewayServer
from fraudlab.ingest.ratelimit import TokenBuckets
from fraudlab.ingest.service import SERVICE_NAME, IngestionServer, ServiceSettings, transaction_problems
from fraudlab.kafka.admin import end_offsets
from fraudlab.schema.messages import TransactionRequest, now_millis, transaction_to_dict
from fraudlab.schema.proto import fraud_pb2, fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import TransactionBatch


def _stream(stub: fraud_pb2_grpc.FraudIngestionStub, *batches: list[TransactionRequest], **kwargs: object) -> list:
    requests = [TransactionBatch(batch_id=i + 1, transactions=b) for i, b in enumerate(batches)]
    return list(stub.StreamTransactions(iter(requests), timeout=30, **kwargs))


@pytest.fixture
def server(kafka_bootstrap, topic, serve):
    """The engine's server (Python or Go: every test taking it is part of the conformance suite)."""
    with serve(ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0)) as target:
        yield target


# --------------------------------------------------------------------------- round trip


def test_streamed_transactions_reach_kafka_exactly_once_with_every_field(server, kafka_bootstrap, topic):
    """N sent = N accepted = exactly N distinct records in the topic, each equal field by field."""
    # Setup
    sent: dict[str, dict] = {}

    def remember(messages: list[TransactionRequest]) -> None:
        sent.update((m.transaction_id, transaction_to_dict(m)) for m in messages)

    # Run
    summary = produce(ProducerSettings(target=server, count=3000, users=50, batch_size=400, seed=3),
                      on_accepted=remember)
    received = _read_all(kafka_bootstrap, topic)

    # Assert
    assert (summary.sent, summary.accepted, summary.rejected, summary.retried) == (3000, 3000, 0, 0)
    assert len(received) == 3000
    assert {m.transaction_id: transaction_to_dict(m) for m in received} == sent
    assert 0 < summary.p50_ms <= summary.p99_ms


def test_unary_send_succeeds_only_after_kafka_and_says_where(server, kafka_bootstrap, topic):
    message = _tx(is_fraud=True, type="TRANSFER", is_unauthorized_overdraft=1.0)
    answer = _stub(server).SendTransaction(message, timeout=10)
    assert answer.success
    assert answer.message.startswith(f"published to {topic} partition ")
    [stored] = _read_all(kafka_bootstrap, topic)
    assert transaction_to_dict(stored) == transaction_to_dict(message)


def _original_contract_message_class() -> type:
    """``TransactionRequest`` as the original system compiled it: fields 1-11 only, in a pool of its own."""
    from google.protobuf import descriptor_pool, message_factory

    original = descriptor_pb2.FileDescriptorProto()
    fraud_pb2.DESCRIPTOR.CopyToProto(original)
    original.ClearField("service")
    [request] = [m for m in original.message_type if m.name == "TransactionRequest"]
    kept = [f for f in request.field if f.number <= 11]
    del request.field[:]
    request.field.extend(kept)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(original)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fraud.TransactionRequest"))


def test_a_client_of_the_original_11_field_message_is_accepted(server, kafka_bootstrap, topic):
    """The contract grew additively: the original message's bytes still publish, the new fields at their defaults."""
    original_class = _original_contract_message_class()
    assert [f.number for f in original_class.DESCRIPTOR.fields] == list(range(1, 12))
    values = transaction_to_dict(_tx(type="TRANSFER"))
    original = original_class(**{k: v for k, v in values.items() if k in original_class.DESCRIPTOR.fields_by_name})
    with grpc.insecure_channel(server) as channel:
        send = channel.unary_unary(f"/{SERVICE_NAME}/SendTransaction",
                                   request_serializer=original_class.SerializeToString,
                                   response_deserializer=fraud_pb2.IngestionResponse.FromString)
        answer = send(original, timeout=10)
    assert answer.success
    [stored] = _read_all(kafka_bootstrap, topic)
    assert stored.transaction_id == original.transaction_id and stored.amount == original.amount
    assert (stored.ip_address, stored.dest_user_id, stored.dest_is_merchant, stored.device_id) == ("", 0, False, "")


@pytest.mark.parametrize("address", ["81.2.69.160", "2001:db8:85a3::8a2e:370:7334", "::ffff:10.1.2.3", ""])
def test_ipv4_ipv6_and_empty_addresses_are_accepted_and_published_as_sent(server, kafka_bootstrap, topic, address):
    message = _tx(ip_address=address, dest_user_id=1_979_787_155, dest_is_merchant=True, device_id="d-42")
    assert _stub(server).SendTransaction(message, timeout=10).success
    [stored] = _read_all(kafka_bootstrap, topic)
    assert transaction_to_dict(stored) == transaction_to_dict(message)


# --------------------------------------------------------------------------- validation


INVALID = [
    ({"transaction_id": ""}, "transaction_id=''"),
    ({"type": "REFUND"}, "type='REFUND'"),
    ({"type": ""}, "type=''"),
    ({"amount": math.nan}, "amount=nan"),
    ({"amount": math.inf}, "amount=inf"),
    ({"amount": -5.0}, "amount=-5.0"),
    ({"old_balance_orig": math.nan}, "old_balance_orig=nan"),
    ({"new_balance_dest": -0.01}, "new_balance_dest=-0.01"),
    ({"timestamp": 0}, "timestamp=0"),
    ({"timestamp": 1_764_000_000}, "timestamp=1764000000 is not plausible epoch milliseconds (it looks like seconds)"),
    ({"timestamp": now_millis() + 10 * 86_400_000}, "is not plausible epoch milliseconds"),
    ({"ip_address": "300.1.2.3"}, "ip_address='300.1.2.3' is not an IPv4 or IPv6 address"),
    ({"ip_address": "10.0.0"}, "ip_address='10.0.0'"),
    ({"ip_address": "2001:db8::g"}, "ip_address='2001:db8::g'"),
    ({"ip_address": " 10.0.0.1"}, "ip_address=' 10.0.0.1'"),
]


@pytest.mark.parametrize(("overrides", "named"), INVALID, ids=[str(o) for o, _ in INVALID])
def test_invalid_transaction_is_refused_naming_field_and_value(server, kafka_bootstrap, topic, overrides, named):
    with pytest.raises(grpc.RpcError) as raised:
        _stub(server).SendTransaction(_tx(**overrides), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in raised.value.details()
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 0


_CLOCK = re.compile(r"to \d+ \(the server's clock")


def _refusals(target: str, cases: list[TransactionRequest]) -> list[tuple[str, str]]:
    """(code, message) of each invalid case, of a second call of a user with a bucket of 1, and of a garbage body."""
    stub = _stub(target)
    seen = []
    for message in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub.SendTransaction(message, timeout=10)
        seen.append((raised.value.code().name, _CLOCK.sub("to <now> (the server's clock", raised.value.details())))
    assert stub.SendTransaction(_tx(user_id=5), timeout=10).success
    with pytest.raises(grpc.RpcError) as raised:
        stub.SendTransaction(_tx(user_id=5), timeout=10)
    seen.append((raised.value.code().name, raised.value.details()))
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(f"/{SERVICE_NAME}/SendTransaction")(b"\xff\xff garbage", timeout=5)
    seen.append((raised.value.code().name, raised.value.details()))
    with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError) as raised:
        channel.unary_unary(f"/{SERVICE_NAME}/SendTransaction")(b"\x0a\x02\xff\xfe", timeout=5)  # bad UTF-8 id
    seen.append((raised.value.code().name, raised.value.details()))
    return seen


def test_both_engines_word_every_refusal_alike(kafka_bootstrap, topic, built_gateway):
    """The same bad input gets the same code and the same message, character for character, from both servers."""
    # Setup: the odd values Python's repr and Go's formatting could disagree on, beside the suite's cases
    odd = [
        {"amount": -1e16}, {"amount": -1e22}, {"amount": -1.5e-7}, {"amount": -123456.789},
        {"old_balance_dest": -0.0001}, {"type": "it's"}, {"type": 'say "hi"'}, {"type": "tab\there\n"},
        {"type": "caf\u00e9 \u2603"}, {"transaction_id": "o'k", "amount": -1.0},
        {"transaction_id": "", "type": "X", "amount": math.nan, "timestamp": 5, "ip_address": "1.2.3"},
    ]
    cases = [_tx(**overrides) for overrides in [overrides for overrides, _ in INVALID] + odd]
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, rate_limit=0.01, rate_burst=1)
    with IngestionServer(settings) as python, GatewayServer(settings) as go:
        # Run
        answers = {"python": _refusals(python, cases), "go": _refusals(go, cases)}

    # Assert
    assert len(answers["go"]) == len(cases) + 3
    assert answers["go"] == answers["python"]
    assert [code for code, _ in answers["go"][-3:]] == ["RESOURCE_EXHAUSTED", "INVALID_ARGUMENT", "INVALID_ARGUMENT"]


def test_a_stream_publishes_the_valid_records_and_names_each_invalid_one(server, kafka_bootstrap, topic):
    good = [_tx() for _ in range(5)]
    bad = [_tx(amount=-1.0), _tx(type="BOGUS", old_balance_dest=math.nan)]
    [answer] = _stream(_stub(server), [good[0], bad[0], *good[1:], bad[1]])
    assert (answer.accepted, answer.rejected, answer.duplicates) == (5, 2, 0)
    assert [(e.index, e.code) for e in answer.errors] == [(1, "INVALID_ARGUMENT"), (6, "INVALID_ARGUMENT")]
    assert "type='BOGUS'" in answer.errors[1].message and "old_balance_dest=nan" in answer.errors[1].message
    assert sorted(m.transaction_id for m in _read_all(kafka_bootstrap, topic)) == sorted(
        m.transaction_id for m in good)


def test_bytes_that_are_not_a_transaction_request_are_invalid_argument(server):
    """A body that does not parse is the client's fault: INVALID_ARGUMENT naming the message, never UNKNOWN."""
    rng = random.Random(11)
    bodies = [rng.randbytes(rng.randint(1, 200)) for _ in range(1000)]
    codes: dict[grpc.StatusCode, int] = {}
    details: set[str] = set()
    with grpc.insecure_channel(server) as channel:
        send = channel.unary_unary(f"/{SERVICE_NAME}/SendTransaction")  # no serializer: the bytes go as they are
        for body in bodies:
            with pytest.raises(grpc.RpcError) as raised:
                send(body, timeout=5)
            codes[raised.value.code()] = codes.get(raised.value.code(), 0) + 1
            details.add(raised.value.details())
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT: 1000}
    assert any("the request is not a fraud.TransactionRequest" in d for d in details)


def test_a_stream_message_that_is_not_a_batch_ends_the_stream_invalid_argument(server, kafka_bootstrap, topic):
    good = TransactionBatch(batch_id=1, transactions=[_tx()]).SerializeToString()
    with grpc.insecure_channel(server) as channel:
        stream = channel.stream_stream(f"/{SERVICE_NAME}/StreamTransactions")
        answers = stream(iter([good, b"\xff\xff\xff garbage"]), timeout=10)
        first = fraud_pb2.BatchResponse.FromString(next(answers))
        with pytest.raises(grpc.RpcError) as raised:
            next(answers)
    assert (first.batch_id, first.accepted) == (1, 1)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "the request is not a fraud.TransactionBatch" in raised.value.details()
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 1


def test_validation_lists_every_problem_of_a_record():
    problems = transaction_problems(_tx(transaction_id="", amount=math.inf, timestamp=5), now_ms=now_millis())
    assert len(problems) == 3
    assert transaction_problems(_tx(), now_ms=now_millis()) == []


# --------------------------------------------------------------------------- duplicates


def test_a_repeated_transaction_id_is_acknowledged_but_not_published_again(server, kafka_bootstrap, topic):
    stub = _stub(server)
    first = _tx()
    assert stub.SendTransaction(first, timeout=10).success
    again = stub.SendTransaction(first, timeout=10)
    assert again.success and "not published again" in again.message
    batch = [_tx(), first, _tx()]
    batch.append(batch[0])
    [answer] = _stream(stub, batch)
    assert (answer.accepted, answer.duplicates, answer.rejected) == (4, 2, 0)
    ids = [m.transaction_id for m in _read_all(kafka_bootstrap, topic)]
    assert sorted(ids) == sorted({first.transaction_id, batch[0].transaction_id, batch[2].transaction_id})


# --------------------------------------------------------------------------- protection


def test_rate_limit_refuses_a_busy_user_with_resource_exhausted(kafka_bootstrap, topic, serve):
    # One token per 100 s: a slow first call (the producer's id is still being fetched) cannot refill the bucket.
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, rate_limit=0.01, rate_burst=3)
    with serve(settings) as target:
        stub = _stub(target)
        for _ in range(3):
            assert stub.SendTransaction(_tx(user_id=7), timeout=10).success
        with pytest.raises(grpc.RpcError) as raised:
            stub.SendTransaction(_tx(user_id=7), timeout=10)
        assert stub.SendTransaction(_tx(user_id=8), timeout=10).success
        [answer] = _stream(stub, [_tx(user_id=9) for _ in range(5)])
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "user_id=7 exceeded the rate limit of 0.01 transactions/s" in raised.value.details()
    assert (answer.accepted, answer.rejected) == (3, 2)
    assert {e.code for e in answer.errors} == {"RESOURCE_EXHAUSTED"}
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 7


def test_the_producer_resends_what_the_rate_limit_refused(kafka_bootstrap, topic, serve):
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, rate_limit=400.0, rate_burst=100)
    with serve(settings) as target:
        summary = produce(ProducerSettings(target=target, count=600, users=1, batch_size=200))
    assert summary.accepted == 600 and summary.retried > 0 and summary.duplicates == 0
    assert len({m.transaction_id for m in _read_all(kafka_bootstrap, topic)}) == 600


def test_token_buckets_refill_at_the_rate_and_cap_at_the_burst():
    buckets = TokenBuckets(rate=10.0, burst=2.0)
    assert [buckets.take(1, 0.0) for _ in range(3)] == [True, True, False]
    assert buckets.take(1, 0.1) and not buckets.take(1, 0.1)
    assert buckets.take(2, 0.1)
    buckets.prune(100.0)
    assert buckets.take(1, 100.0) and buckets.take(1, 100.0) and not buckets.take(1, 100.0)


def test_bearer_token_is_required_except_for_health(kafka_bootstrap, topic, serve):
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, tokens=("s3cret", "other"))
    with serve(settings) as target:
        stub = _stub(target)
        refused = []
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", "s3cret"),)):
            with pytest.raises(grpc.RpcError) as raised:
                stub.SendTransaction(_tx(), metadata=metadata, timeout=10)
            refused.append(raised.value)
        assert stub.SendTransaction(_tx(), metadata=(("authorization", "Bearer s3cret"),), timeout=10).success
        assert stub.SendTransaction(_tx(), metadata=(("authorization", "bearer other"),), timeout=10).success
        assert check_health(target) == "SERVING"
        with pytest.raises(ProducerError, match="UNAUTHENTICATED"):
            produce(ProducerSettings(target=target, count=10))
        summary = produce(ProducerSettings(target=target, count=10, token="s3cret"))
    assert {e.code() for e in refused} == {grpc.StatusCode.UNAUTHENTICATED}
    assert "Bearer <token>" in refused[0].details()
    assert summary.accepted == 10
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 12


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 and its key, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


def test_tls_serves_clients_that_trust_the_certificate_only(kafka_bootstrap, topic, self_signed, serve):
    cert, key = self_signed
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, tls_cert=cert, tls_key=key)
    with serve(settings) as target:
        trusted = _stub(target, grpc.ssl_channel_credentials(root_certificates=cert.read_bytes()))
        assert trusted.SendTransaction(_tx(), timeout=10).success
        with pytest.raises(grpc.RpcError) as plaintext:
            _stub(target).SendTransaction(_tx(), timeout=5)
        assert check_health(target, tls_ca=cert) == "SERVING"
        summary = produce(ProducerSettings(target=target, count=20, tls_ca=cert))
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    assert summary.accepted == 20


def test_a_message_over_the_size_limit_is_refused(kafka_bootstrap, topic, serve):
    settings = ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0, max_message_bytes=8192)
    with serve(settings) as target, pytest.raises(grpc.RpcError) as raised:
        _stream(_stub(target), [_tx() for _ in range(200)])
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sum(end_offsets(kafka_bootstrap, topic).values()) == 0


# --------------------------------------------------------------------------- operations


def test_health_and_reflection_describe_the_server(server):
    assert check_health(server) == "SERVING"
    assert check_health(server, service=SERVICE_NAME) == "SERVING"
    with grpc.insecure_channel(server) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        method = database.FindFileContainingSymbol(SERVICE_NAME).service[0].method
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    assert [m.name for m in method] == ["SendTransaction", "StreamTransactions"]


def test_reflection_finds_the_file_of_a_method_as_grpc_go_clients_ask(server):
    with grpc.insecure_channel(server) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        def ask(symbol: str) -> reflection_pb2.ServerReflectionResponse:
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
            return next(iter(stub.ServerReflectionInfo(iter([request]), timeout=10)))

        found = ask(f"{SERVICE_NAME}.SendTransaction")
        missing = ask(f"{SERVICE_NAME}.NoSuchMethod")
    files = [descriptor_pb2.FileDescriptorProto.FromString(raw)
             for raw in found.file_descriptor_response.file_descriptor_proto]
    assert [service.name for f in files for service in f.service] == ["FraudIngestion"]
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_stopping_leaves_no_thread_and_refuses_calls(kafka_bootstrap, topic):
    server = IngestionServer(ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0))
    target = server.start()
    server.stop()
    server.stop()
    assert not server.running
    assert not [t for t in threading.enumerate() if t.name == "fraudlab-ingestion"]
    with pytest.raises(ServiceError, match="UNAVAILABLE"):
        check_health(target, timeout=2)


def test_settings_list_every_problem_at_once(tmp_path):
    with pytest.raises(ServiceError) as raised:
        ServiceSettings(port=-1, ack_timeout=0, tls_cert=tmp_path / "missing.pem")
    text = str(raised.value)
    assert "port=-1" in text and "ack_timeout=0" in text and "give both PEM files" in text


def test_a_taken_port_and_an_absent_broker_are_explained(kafka_bootstrap, topic, serve):
    with serve(ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=0)) as target:
        port = int(target.rsplit(":", 1)[1])
        with pytest.raises(ServiceError, match=f"Cannot listen on 127.0.0.1:{port}"):
            serve(ServiceSettings(bootstrap=kafka_bootstrap, topic=topic, port=port)).start()
    nowhere = ServiceSettings(bootstrap=f"127.0.0.1:{free_port()}", port=0, startup_timeout=2)
    with pytest.raises(ServiceError, match="did not answer within 2 s"):
        serve(nowhere).start()
    assert not [t for t in threading.enumerate() if t.name == "fraudlab-ingestion"]


def test_cli_produce_health_and_consume_work_together(server, kafka_bootstrap, topic):
    runner = CliRunner()
    health = runner.invoke(cli, ["health", "--target", server])
    produced = runner.invoke(cli, ["produce", "--target", server, "--count", "40", "--users", "5", "--no-progress"])
    consumed = runner.invoke(cli, ["consume", "--bootstrap", kafka_bootstrap, "--topic", topic, "--max", "40",
                                   "--from-beginning"])
    assert (health.exit_code, health.output.strip()) == (0, f"{server}: SERVING")
    assert produced.exit_code == 0, produced.output
    assert "sent 40  accepted 40 (0 duplicates)  rejected 0  retried 0" in produced.output
    assert consumed.exit_code == 0, consumed.output
    assert f"40 transaction(s) from {topic!r}" in consumed.output
    assert "transaction_id" in consumed.output and "timestamp" in consumed.output


# --------------------------------------------------------------------------- failures


@pytest.mark.kafka
@pytest.mark.slow
def test_broker_outage_mid_stream_gives_unavailable_then_resumes_without_loss_or_duplicates(
        fresh_broker_settings, serve):
    """Stop the broker under a running stream: clients get UNAVAILABLE, the producer waits, nothing is lost."""
    # Setup: a broker of our own, stopped and restarted on the same state dir so its data persists
    broker = fresh_broker_settings("broker")
    start_broker(broker)
    topic = "outage"
    acknowledged: set[str] = set()
    try:
        settings = ServiceSettings(bootstrap=broker.bootstrap, topic=topic, port=0, ack_timeout=3)
        with serve(settings) as target:
            thread, outcome = _produce_in_background(
                ProducerSettings(target=target, count=12_000, rate=1500, users=100, retry_timeout=90), acknowledged)
            time.sleep(2.5)
            # Run
            stop_broker(broker)
            unary_errors = []
            deadline = time.monotonic() + 15
            while not unary_errors and time.monotonic() < deadline:
                try:
                    _stub(target).SendTransaction(_tx(), timeout=8)
                except grpc.RpcError as exc:
                    unary_errors.append(exc)
            during_outage = len(acknowledged)
            health_during = check_health(target)
            time.sleep(1)
            stalled = len(acknowledged) == during_outage
            start_broker(broker)
            thread.join(120)
            health_after = check_health(target)
        received = _read_all(broker.bootstrap, topic)
    finally:
        stop_broker(broker)

    # Assert
    assert unary_errors and unary_errors[0].code() == grpc.StatusCode.UNAVAILABLE
    assert stalled, "nothing may be acknowledged while the broker is down"
    assert (health_during, health_after) == ("NOT_SERVING", "SERVING")
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    assert summary.accepted == 12_000 and summary.retried > 0
    ids = [m.transaction_id for m in received]
    assert acknowledged <= set(ids)
    produced = [i for i in ids if i in acknowledged]
    assert len(produced) == len(set(produced)) == 12_000


@pytest.mark.slow
def test_sigterm_during_a_stream_loses_nothing_acknowledged(kafka_bootstrap, topic, serve_command):
    """`fraudlab serve` gets SIGTERM mid-stream: it exits 0, and every acknowledged transaction is in Kafka."""
    # Setup
    port = free_port()
    command = [sys.executable, "-m", "fraudlab", "serve", *serve_command, "--bootstrap", kafka_bootstrap,
               "--topic", topic, "--port", str(port)]
    target = f"127.0.0.1:{port}"

    def start_server() -> subprocess.Popen:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if check_health(target, timeout=1) == "SERVING":
                    return process
            except FraudlabError:
                time.sleep(0.2)
        process.kill()
        pytest.fail(f"fraudlab serve did not start: {process.communicate()[0]}")

    acknowledged: set[str] = set()
    servers = [start_server()]
    try:
        thread, outcome = _produce_in_background(
            ProducerSettings(target=target, count=10_000, rate=2000, users=100, retry_timeout=60), acknowledged)
        time.sleep(2)
        # Run
        servers[0].send_signal(signal.SIGTERM)
        first_output = servers[0].communicate(timeout=30)[0]
        at_shutdown = set(acknowledged)
        servers.append(start_server())
        thread.join(90)
    finally:
        for process in servers:
            if process.poll() is None:
                process.terminate()
                process.wait(30)
    received = [m.transaction_id for m in _read_all(kafka_bootstrap, topic)]

    # Assert
    assert [process.returncode for process in servers] == [0, 0], first_output
    assert "shutting down" in first_output and "stopped" in first_output
    assert 0 < len(at_shutdown) < 10_000
    assert at_shutdown <= set(received)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["summary"].accepted == 10_000
    assert len(received) == len(set(received)) == 10_000

