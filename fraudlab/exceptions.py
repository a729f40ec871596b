"""The errors fraudlab raises, all in one place.

Every error derives from :class:`FraudlabError`, so a caller can catch the
whole family at once. Below it there is one class per way a caller may react
differently::

    FraudlabError
    ├── InvalidParameterError (also a ValueError)   fix the argument and call again
    │   └── SimulationError                         the simulator's size, seed, setting or calibration
    ├── DataValidationError                         fix the data: every problem is listed
    │   └── EvaluationInputError                    a table handed to the evaluation or the plots
    ├── ModelFileError                              the saved model is missing, tampered with or too new
    ├── NotFittedError                              fit (or load) the synthesizer first
    ├── ServiceUnavailableError                     a server is not reachable now: start it, or retry later
    │   ├── KafkaTimeoutError                       Kafka kept answering transiently until the deadline
    │   ├── KafkaUnavailableError                   no broker reachable: nothing was published
    │   ├── RegistryUnavailableError                the package registry cannot be reached: retry, or --registry
    │   ├── RedisUnavailableError                   the shared Redis state cannot be read or written now
    │   └── MlflowUnavailableError                  the MLflow tracking server does not answer: `fraudlab mlflow up`
    ├── KafkaPublishError                           Kafka did not confirm every record
    │   └── KafkaUnavailableError
    ├── ServiceError                                the ingestion server cannot be configured or started
    ├── ProducerError                               the producer cannot go on
    ├── BrokerError                                 the local broker cannot be resolved, started or stopped
    │   └── MissingToolError                        java or mvn is absent or too old
    ├── RedisError                                  the local Redis server cannot be started or stopped
    ├── MlflowError                                 the local MLflow tracking server cannot be started or stopped
    ├── ModelRegistryError                          the MLflow registry lacks the version, alias or metric asked for
    ├── ReadBackMismatchError                       Kafka does not hold exactly what was acknowledged
    ├── RegistryError                               the package registry lacks the package, version or a file
    │   ├── RegistryUnavailableError
    │   └── IntegrityError                          a download does not match its published checksum
    ├── MissingDataError                            downloaded data is not in the cache: run the fetch command
    ├── FlinkError                                  the local Flink cluster, its connector jar, or a scoring job failed
    └── AirflowError                                no Airflow venv, or Airflow standalone cannot start or stop

Messages name the offending setting or value and how to fix it. A library
error that has a cause (a confluent-kafka or gRPC exception) is raised
``from`` it, so ``--debug`` shows both.
"""

from __future__ import annotations

__all__ = [
    "AirflowError",
    "BrokerError",
    "DataValidationError",
    "EvaluationInputError",
    "FlinkError",
    "FraudlabError",
    "IntegrityError",
    "InvalidParameterError",
    "KafkaPublishError",
    "KafkaTimeoutError",
    "KafkaUnavailableError",
    "MissingDataError",
    "MissingToolError",
    "MlflowError",
    "MlflowUnavailableError",
    "ModelFileError",
    "ModelRegistryError",
    "NotFittedError",
    "ProducerError",
    "ReadBackMismatchError",
    "RedisError",
    "RedisUnavailableError",
    "RegistryError",
    "RegistryUnavailableError",
    "ServiceError",
    "ServiceUnavailableError",
    "SimulationError",
]


class FraudlabError(Exception):
    """Raised for any failure that fraudlab detects and can explain."""


class InvalidParameterError(FraudlabError, ValueError):
    """Raised when an argument is out of range or of the wrong kind; the message names it and the allowed values."""


class SimulationError(InvalidParameterError):
    """Raised when the simulator is given an invalid size, seed, setting or calibration."""


class DataValidationError(FraudlabError):
    """Raised when a table or file has missing columns or rows that break the schema.

    ``problems`` lists every finding (file, line, column, value), collected
    before raising so one run shows them all.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} problem(s):\n  {shown}{more}")


class EvaluationInputError(DataValidationError):
    """Raised when a table given to the evaluation is no canonical table: columns missing, no rows, NaN or bad values.

    Like :class:`DataValidationError` (its parent), it lists every problem
    found, naming the table, the column and the value.
    """


class ModelFileError(FraudlabError):
    """Raised when a saved model is missing, tampered with, or of an unknown format version."""


class NotFittedError(FraudlabError):
    """Raised when sampling or saving a synthesizer that was never fitted."""


class ServiceUnavailableError(FraudlabError):
    """Raised when a server fraudlab needs (Kafka, the ingestion service) cannot be reached right now."""


class KafkaPublishError(FraudlabError):
    """Raised when Kafka did not confirm every record of a publish call."""


class KafkaUnavailableError(KafkaPublishError, ServiceUnavailableError):
    """Raised when no broker can be reached, so a record is refused before it is queued."""


class KafkaTimeoutError(ServiceUnavailableError):
    """Raised when Kafka kept answering a metadata or offset query with a transient error until the deadline."""


class RedisUnavailableError(ServiceUnavailableError):
    """Raised when the Redis that holds the workers' shared dedup and rate-limit state does not answer."""


class RedisError(FraudlabError):
    """Raised when the local Redis server cannot be started (binary missing, port taken) or stopped."""


class MlflowUnavailableError(ServiceUnavailableError):
    """Raised when the MLflow tracking server a URI names does not answer; the message says how to start it."""


class MlflowError(FraudlabError):
    """Raised when the local MLflow tracking server cannot be started (port taken, exited early) or stopped."""


class ModelRegistryError(FraudlabError):
    """Raised when the MLflow model registry has no such version or alias, or a run lacks the metric compared."""


class ServiceError(FraudlabError):
    """Raised when the ingestion server cannot be configured, started or reached."""


class ProducerError(FraudlabError):
    """Raised when the producer cannot go on: a non-retriable status, a bad source, or no progress for too long."""


class BrokerError(FraudlabError):
    """Raised when the local Kafka broker cannot be resolved, started or stopped."""


class MissingToolError(BrokerError):
    """Raised when an external program the broker needs (java, mvn) is absent or too old."""


class ReadBackMismatchError(FraudlabError):
    """Raised when the records read back from Kafka are not exactly the transactions the service acknowledged."""


class RegistryError(FraudlabError):
    """Raised when a package registry has no such package or version, or its tarball lacks a file fraudlab needs."""


class RegistryUnavailableError(RegistryError, ServiceUnavailableError):
    """Raised when the package registry cannot be reached now (network down, timeout, a 5xx answer)."""


class IntegrityError(RegistryError):
    """Raised when a downloaded tarball does not match the checksum its registry published; nothing is kept."""


class MissingDataError(FraudlabError):
    """Raised when downloaded reference data (the GeoIP databases) is not in the cache; the message names the fetch."""


class FlinkError(FraudlabError):
    """The local Flink cluster could not be started or stopped, its Kafka connector not resolved, or a job failed."""


class AirflowError(FraudlabError):
    """Raised when the Airflow venv is missing or the local Airflow (standalone) cannot be started or stopped."""
