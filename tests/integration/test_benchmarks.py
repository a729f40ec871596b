"""The ingestion benchmark runs end to end at tiny sizes, so the commands docs/ingestion.md gives stay true.

Only that it works and what it reports are checked here; its numbers mean
something only at full size on a quiet machine (see docs/ingestion.md).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from fraudlab.schema.proto.fraud_pb2 import TransactionRequest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ROWS = (
    "raw confluent-kafka producer (no gRPC)",
    "gRPC floor: empty handler, unary, concurrency 64",
    "gRPC floor: empty handler, StreamTransactions",
    "unary SendTransaction, concurrency 1",
    "unary SendTransaction, concurrency 16",
    "unary SendTransaction, concurrency 64",
    "StreamTransactions, max rate",
    "StreamTransactions paced at 50 % of max",
    "raw producer paced at the same rate (broker's own tail)",
    "Redis, 1 worker: unary SendTransaction, concurrency 64",
    "Redis, 1 worker: StreamTransactions, max rate",
    "Redis, 2 workers: unary SendTransaction, concurrency 64",
    "Redis, 2 workers: StreamTransactions, max rate",
)


def _ingest_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCHMARKS / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def test_ghz_call_data_keeps_the_transaction_and_templates_what_must_change():
    message = TransactionRequest(transaction_id="t-1", user_id=1234567890, amount=181.5, timestamp=1764000000000,
                                 type="TRANSFER", old_balance_orig=181.5, is_fraud=True)
    data = json.loads(_ingest_module().ghz_template(message))
    assert data["transaction_id"] == "{{.UUID}}"
    assert data["timestamp"] == "{{.TimestampUnixMilli}}"
    assert re.fullmatch(r"\{\{randomInt \d{10} \d{10}\}\}", data["user_id"])
    assert (data["amount"], data["type"], data["old_balance_orig"], data["is_fraud"]) == (181.5, "TRANSFER", 181.5,
                                                                                         True)


@pytest.mark.kafka
@pytest.mark.slow
def test_ingest_benchmark_reports_every_row_for_every_repeat(kafka_bootstrap):
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "ingest.py"), "--bootstrap", kafka_bootstrap, "--repeats", "2",
         "--stream-count", "4000", "--unary-seconds", "0.5", "--paced-seconds", "0.5", "--python-client"],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "2 repeats" in out and "unary calls from a grpc.aio client" in out
    medians = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in ROWS:
            medians[cells[0]] = float(cells[1].replace(",", ""))
    assert set(medians) == set(ROWS)
    assert all(rate > 0 for rate in medians.values()), medians
    assert re.search(r"^\| raw confluent-kafka producer \(no gRPC\) \|[^|]+\|[^|]+\| 100 % \|", out, re.M)
    repeats = re.findall(r"^\| (\d) \| [\d,]+ \| [\d,]+ \(\d+ %\) \|", out, re.M)
    assert repeats == ["1", "2"]
    trips = dict(re.findall(r"^Redis round trips per transaction, (.+): ([\d.]+)$", out, re.M))
    assert set(trips) == {row for row in ROWS if row.startswith("Redis")}
    assert all(float(value) > 0 for value in trips.values()), trips


@pytest.mark.kafka
@pytest.mark.slow
def test_gateway_benchmark_reports_all_four_servers_side_by_side(kafka_bootstrap):
    """Python and Go, real servers and empty floors, each at three concurrencies and a stream, every repeat."""
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gateway.py"), "--bootstrap", kafka_bootstrap, "--repeats", "2",
         "--stream-count", "3000", "--unary-seconds", "0.5", "--python-client"],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {}
    for line in completed.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and ": " in cells[0]:
            rows[cells[0]] = (float(cells[1].replace(",", "")), cells[3])
    servers = ("Python floor", "Go floor", "Python server", "Go gateway")
    kinds = ("unary, concurrency 1", "unary, concurrency 16", "unary, concurrency 64", "StreamTransactions, max rate")
    assert set(rows) == {f"{server}: {kind}" for server in servers for kind in kinds}
    assert all(rate > 0 for rate, _ in rows.values()), rows
    assert {ratio for row, (_, ratio) in rows.items() if row.startswith("Python server")} == {"1.00x"}
    assert "2 repeats" in completed.stdout and "a grpc.aio client" in completed.stdout


@pytest.mark.slow
def test_accounts_benchmark_quick_run_reports_every_table():
    """Needs the GeoIP index (`fraudlab geoip fetch`), like `fraudlab generate`."""
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "accounts.py"), "--quick"], capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert "generate_stream(rows=20,000, accounts=10,000, seed=7): 1 runs" in out
    assert re.search(r"^\| seconds \(median run\) \| [\d.]+ \| ≤ 30 s \| yes \|", out, re.M)
    fraud = re.search(r"^\| all fraud \| \| \d+ \| ([\d.]+)% \| 0\.130% \| \|$", out, re.M)
    assert fraud is not None and abs(float(fraud.group(1)) - 0.13) < 0.06  # 20,000 rows: a burst or two either way
    home = re.search(r"^\| home \| ([\d.]+)% \| 85% \|", out, re.M)
    assert home is not None and abs(float(home.group(1)) - 85) < 2
    assert re.search(r"^\| debits_origin_floored_at_zero \| 100\.000% \|$", out, re.M)


GEOIP_ROWS = ("GeoIP.lookup, one at a time", "lookup_many, 2,000 distinct", "AddressSpace.draw",
              "draw + ipv4_strings")


@pytest.mark.slow
def test_geoip_benchmark_reports_every_row(tmp_path):
    """At tiny sizes on the suite's cache (``make geoip`` fetched it): every row with a positive rate."""
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "geoip.py"), "--rows", "20000", "--distinct", "2000", "--singles", "2000",
         "--draws", "20000", "--repeats", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rates = {}
    for line in completed.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in GEOIP_ROWS:
            rates[cells[0]] = float(cells[4].replace(",", ""))
    assert set(rates) == set(GEOIP_ROWS)
    assert all(rate > 0 for rate in rates.values()), rates
    assert "median of 2" in completed.stdout
    for label in ("AddressSpace.load", r"build_address_space \(the index\)"):
        assert re.search(rf"^\| {label} +\| +\| +\d+\.\d{{3}} \|", completed.stdout, re.M), label


DETECT_BATCH_ROWS = ("score_matrix, 20,000 rows", "score(DataFrame), 20,000 rows", "LightGBM predict, 20,000 rows")
DETECT_SINGLE_ROWS = ("score_matrix, one row", "LightGBM predict, one row")


@pytest.mark.slow
def test_detect_model_benchmark_quick_run_reports_every_row():
    """Scores with the pre-trained detector, or trains a small one on random rows first and says so."""
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "detect_model.py"), "--quick"], capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert re.search(r"^model: .+", out, re.M) and "onnxruntime 1 thread; median of 1" in out
    rates, latencies = {}, {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in DETECT_BATCH_ROWS:
            rates[cells[0]] = float(cells[4].replace(",", ""))
        elif cells[0] in DETECT_SINGLE_ROWS:
            latencies[cells[0]] = (float(cells[2]), float(cells[3]))
    assert set(rates) == set(DETECT_BATCH_ROWS) and all(rate > 0 for rate in rates.values()), rates
    assert set(latencies) == set(DETECT_SINGLE_ROWS)
    assert all(0 < p50 <= p99 for p50, p99 in latencies.values()), latencies
    assert re.search(r"^batch score_matrix: [\d,]+ rows/s \(slowest size\); target 200,000: (met|MISSED)$", out, re.M)
    assert re.search(r"^single record p99: [\d.]+ ms; target 1 ms: (met|MISSED)$", out, re.M)


def test_features_benchmark_quick_run_times_every_executor():
    """Needs the GeoIP databases (`fraudlab geoip fetch`), like the features themselves."""
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "features.py"), "--quick"], capture_output=True,
                               text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert re.search(r"^compute_features on 2\d,\d{3} rows \(2,000 accounts, 30 days\): 1 runs", out, re.M)
    for phase in ("feature_inputs", "raw_aggregates", "finish", "table executor, all of it", "StreamingFeatures.run"):
        assert re.search(rf"^\| {re.escape(phase)}.* \| [\d.]+ \| [\d,]+ \|$", out, re.M), phase
    assert "| table executor, 20 lakh rows | not run (" in out


@pytest.mark.slow
def test_realtime_benchmark_quick_run_reports_every_row(kafka_bootstrap):
    """The Flink job benchmark at tiny sizes: every row present, every live record scored, numbers positive."""
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "detect.py"), "--quick", "--bootstrap",
                                kafka_bootstrap], capture_output=True, text=True, timeout=1200)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {}
    for line in completed.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 2 and line.startswith("|") and cells[0] not in ("measure", "---"):
            rows[cells[0]] = cells[1]
    assert float(rows["sustained throughput, parallelism 1 (exactly-once sink)"].split()[0].replace(",", "")) > 0
    scored, published = (int(n.replace(",", "")) for n in rows["scored / published (live)"].split(" / "))
    assert scored == published > 0, "every paced record was scored and committed"
    for label in ("start-up: launch -> all tasks running", "ack -> committed scored record p50",
                  "ack -> committed scored record p99", "peak JVM resident memory"):
        assert float(rows[label].split()[0].replace(",", "")) > 0, (label, rows[label])
