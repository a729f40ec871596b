// Command grpc-floor is a fraud.FraudIngestion server that does nothing, the Go twin of benchmarks/grpc_floor.py:
// SendTransaction answers success at once and StreamTransactions answers every batch as accepted, without
// validating, deduplicating or publishing. benchmarks/gateway.py runs it under the same clients as the gateway, to
// show what grpc-go alone costs here.
//
//	go run ./cmd/grpc-floor --port 50098   # until SIGTERM/SIGINT
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"fraudlab/gateway/internal/fraudpb"
)

type nothing struct {
	fraudpb.UnimplementedFraudIngestionServer
}

func (nothing) SendTransaction(context.Context, *fraudpb.TransactionRequest) (*fraudpb.IngestionResponse, error) {
	return &fraudpb.IngestionResponse{Success: true, Message: "not published"}, nil
}

func (nothing) StreamTransactions(stream fraudpb.FraudIngestion_StreamTransactionsServer) error {
	// fraudlab's client waits for the headers, as the real servers send them at once.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		batch, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		answer := &fraudpb.BatchResponse{BatchId: batch.BatchId, Accepted: uint32(len(batch.Transactions))}
		if err := stream.Send(answer); err != nil {
			return err
		}
	}
}

func main() {
	port := flag.Int("port", 50098, "gRPC port on 127.0.0.1")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	server := grpc.NewServer(grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20))
	fraudpb.RegisterFraudIngestionServer(server, nothing{})
	healthpb.RegisterHealthServer(server, health.NewServer())
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; server.GracefulStop() }()
	_ = server.Serve(listener)
}
