"""The gRPC ingestion tier: the service in front of Kafka, and the client that streams transactions into it.

* :mod:`~fraudlab.ingest.service`: validation, dedup, rate limit, health and reflection; answers once Kafka confirmed;
* :mod:`~fraudlab.ingest.client`: the producer / load generator, resending whatever was not acknowledged;
* :mod:`~fraudlab.ingest.channel`: what both ends share (channel options, credentials, metadata, health check);
* :mod:`~fraudlab.ingest.plots`: throughput and latency figures of a producer run;
* :mod:`~fraudlab.ingest.gateway`: the Go gateway (``gateway/``), built and run from the same settings.

Import the module you need: the client never loads the server, nor the server the client.
"""
