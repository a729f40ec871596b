"""A ``fraud.FraudIngestion`` server that does nothing: what gRPC alone costs in Python on this machine.

``SendTransaction`` answers success at once and ``StreamTransactions``
answers every batch as accepted, without validating, deduplicating or
publishing anything. ``benchmarks/ingest.py`` runs it under the same clients
as the real service, so the table shows how much of the service's cost is
the framework's own and which targets no Python gRPC server could reach here.

    .venv/bin/python benchmarks/grpc_floor.py --port 50099   # until SIGTERM/SIGINT
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from fraudlab.ingest.channel import channel_options
from fraudlab.schema.proto import fraud_pb2_grpc
from fraudlab.schema.proto.fraud_pb2 import BatchResponse, IngestionResponse, TransactionBatch, TransactionRequest


class _Nothing(fraud_pb2_grpc.FraudIngestionServicer):
    """Answers without doing any of the service's work."""

    async def SendTransaction(self, request: TransactionRequest, context: grpc.aio.ServicerContext
                              ) -> IngestionResponse:
        return IngestionResponse(success=True, message="not published")

    async def StreamTransactions(self, request_iterator: AsyncIterator[TransactionBatch],
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[BatchResponse]:
        await context.send_initial_metadata(())  # fraudlab's client waits for it, as the real server sends it
        async for batch in request_iterator:
            yield BatchResponse(batch_id=batch.batch_id, accepted=len(batch.transactions))


async def serve(port: int) -> None:
    server = grpc.aio.server(options=channel_options())
    fraud_pb2_grpc.add_FraudIngestionServicer_to_server(_Nothing(), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    gc.collect()
    gc.freeze()  # as `fraudlab serve` does
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
