# The fraudlab image used by docker-compose.yaml for the ingestion server and the producer.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY fraudlab ./fraudlab
COPY proto ./proto
RUN pip install --no-cache-dir -c constraints.txt -e .
# The open GeoIP databases (CC BY 4.0, see README) the producer's account streams draw addresses from, once per build.
ENV FRAUDLAB_CACHE_DIR=/var/cache/fraudlab
RUN fraudlab geoip fetch

ENV KAFKA_BROKER=kafka:19092
EXPOSE 50051
CMD ["fraudlab", "--help"]
