"""Launchers of real local servers that tests, notebooks and the CLI share, all with one lifecycle.

* :mod:`~fraudlab.infra.broker`: a single-node KRaft Apache Kafka from jars Maven resolves into the cache;
* :mod:`~fraudlab.infra.redis`: a redis-server with append-only persistence;
* :mod:`~fraudlab.infra.mlflow`: the MLflow tracking server and its UI;
* :mod:`~fraudlab.infra.flink`: a standalone Apache Flink cluster from the Flink venv's PyFlink, its Kafka connector
  jar, and the ``flink run`` argv of a PyFlink job;
* :mod:`~fraudlab.infra.airflow`: Airflow standalone from the Airflow venv, scheduling the continuous-training DAG;
* :mod:`~fraudlab.infra.maven`: the Java runtime and Maven a launcher needs, or what to install;
* :mod:`~fraudlab.infra.npm`: integrity-checked package downloads from the npm registry;
* :mod:`~fraudlab.infra.process`: free ports, file locks, dying with the owner, ready waits, group stops, reaping,
  log tails.
"""

from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.flink import FlinkSettings, LocalFlinkCluster
from fraudlab.infra.process import free_port

__all__ = ["BrokerSettings", "FlinkSettings", "LocalBroker", "LocalFlinkCluster", "free_port"]
