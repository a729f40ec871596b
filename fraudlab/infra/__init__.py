"""Launchers of real local servers that tests, notebooks and the CLI share: today the Kafka broker.

* :mod:`~fraudlab.infra.broker`: a single-node KRaft Apache Kafka from jars Maven resolves into the cache.
"""

from fraudlab.infra.broker import BrokerSettings, LocalBroker, free_port

__all__ = ["BrokerSettings", "LocalBroker", "free_port"]
