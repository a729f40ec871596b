// Command fraudlab-gateway is fraudlab's ingestion service in Go: fraud.FraudIngestion with the Python server's
// contract and guarantees (validation, deduplication and rate limits in the same Redis state, an answer only after
// Kafka confirmed), for unary throughput no Python gRPC server reaches. `fraudlab serve --engine go` runs it with the
// same flags; accepted bearer tokens come from FRAUDLAB_TOKENS (space-separated) and the Redis URL from REDIS_URL, so
// neither shows in the process list.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"fraudlab/gateway/internal/ingest"
)

func seconds(value float64) time.Duration { return time.Duration(value * float64(time.Second)) }

func parse(arguments []string) (ingest.Settings, error) {
	flags := flag.NewFlagSet("fraudlab-gateway", flag.ContinueOnError)
	bootstrap := flags.String("bootstrap", "127.0.0.1:9092", "Kafka bootstrap servers")
	topic := flags.String("topic", "raw_transactions", "topic the transactions go to; created if missing")
	partitions := flags.Int("partitions", 3, "partitions of a topic created here")
	host := flags.String("host", "127.0.0.1", "interface to bind")
	port := flags.Int("port", 50051, "gRPC port; 0 picks a free one")
	tlsCert := flags.String("tls-cert", "", "PEM certificate; with --tls-key turns TLS on")
	tlsKey := flags.String("tls-key", "", "PEM private key")
	rateLimit := flags.Float64("rate-limit", 1000, "transactions per second allowed per user_id; 0 disables")
	rateBurst := flags.Float64("rate-burst", 2000, "token-bucket depth per user_id")
	dedupWindow := flags.Float64("dedup-window", 300, "seconds a published transaction_id is remembered")
	dedupCapacity := flags.Int("dedup-capacity", 1_000_000, "at most this many remembered ids (memory state)")
	redisPrefix := flags.String("redis-prefix", "fraudlab", "first part of every Redis key")
	redisLease := flags.Float64("redis-lease", 3, "seconds a worker counts as alive without renewing its lease")
	redisTimeout := flags.Float64("redis-timeout", 1, "seconds one Redis call may take")
	luaDir := flags.String("lua-dir", "", "folder of fraudlab's Lua scripts (fraudlab/ingest/lua); needed with Redis")
	reusePort := flags.Bool("reuse-port", false, "bind with SO_REUSEPORT so several workers share the port")
	maxMessage := flags.Int("max-message-bytes", 16*1024*1024, "largest request or response")
	ackTimeout := flags.Float64("ack-timeout", 10, "seconds to wait for Kafka's confirmation")
	grace := flags.Float64("grace", 10, "seconds in-flight calls get to finish on SIGTERM/SIGINT")
	flushTimeout := flags.Float64("flush-timeout", 30, "seconds the producer gets to deliver on shutdown")
	maxFuture := flags.Int64("max-future-ms", 86_400_000, "how far past the server's clock a timestamp may lie")
	streamWindow := flags.Int("stream-window", 64, "batches one stream may have published but not answered")
	startupTimeout := flags.Float64("startup-timeout", 15, "seconds to wait for Kafka when starting")
	lingerMS := flags.Float64("linger-ms", 1, "milliseconds the producer waits to fill a batch (librdkafka's linger.ms)")
	if err := flags.Parse(arguments); err != nil {
		return ingest.Settings{}, err
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return ingest.Settings{}, fmt.Errorf("tls_cert=%s and tls_key=%s: give both PEM files, or neither", *tlsCert, *tlsKey)
	}
	return ingest.Settings{
		Bootstrap: *bootstrap, Topic: *topic, Partitions: *partitions, Host: *host, Port: *port,
		TLSCert: *tlsCert, TLSKey: *tlsKey, Tokens: strings.Fields(os.Getenv("FRAUDLAB_TOKENS")),
		RateLimit: *rateLimit, RateBurst: *rateBurst, DedupWindow: seconds(*dedupWindow), DedupCapacity: *dedupCapacity,
		RedisURL: os.Getenv("REDIS_URL"), RedisPrefix: *redisPrefix, RedisLease: seconds(*redisLease),
		RedisTimeout: seconds(*redisTimeout), LuaDir: *luaDir, ReusePort: *reusePort, MaxMessageBytes: *maxMessage,
		AckTimeout: seconds(*ackTimeout), Grace: seconds(*grace), FlushTimeout: seconds(*flushTimeout),
		MaxFutureMS: *maxFuture, StreamWindow: *streamWindow, StartupTimeout: seconds(*startupTimeout),
		Linger: time.Duration(*lingerMS * float64(time.Millisecond)),
	}, nil
}

// quiet drops go-redis's own log lines: its failures reach the caller as errors, which the gateway words itself.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func main() {
	redis.SetLogger(quiet{})
	log.SetFlags(0)
	log.SetPrefix("fraudlab-gateway: ")
	settings, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(2)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	server, err := ingest.Start(settings)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, server.Describe())
	<-signals
	fmt.Fprintf(os.Stderr, "shutting down: finishing in-flight calls (grace %s s) and flushing Kafka\n",
		ingest.PyG(settings.Grace.Seconds()))
	unconfirmed := server.Stop()
	if unconfirmed > 0 {
		fmt.Fprintf(os.Stderr, "stopped; %d unacknowledged records were not confirmed by Kafka\n", unconfirmed)
	} else {
		fmt.Fprintln(os.Stderr, "stopped")
	}
}
