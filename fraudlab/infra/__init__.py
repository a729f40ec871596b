"""Launchers of real local servers that tests, notebooks and the CLI share: today the Kafka broker.

* :mod:`~fraudlab.infra.broker`: a single-node KRaft Apache Kafka from jars Maven resolves into the cache;
* :mod:`~fraudlab.infra.maven`: the Java runtime and Maven a launcher needs, or what to install;
* :mod:`~fraudlab.infra.process`: free ports, file locks, dying with the owner, reaping, log tails.
"""

from fraudlab.infra.broker import BrokerSettings, LocalBroker
from fraudlab.infra.process import free_port

__all__ = ["BrokerSettings", "LocalBroker", "free_port"]
