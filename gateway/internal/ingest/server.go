package ingest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"fraudlab/gateway/internal/fraudpb"
)

// ServiceName is the gRPC service both servers implement.
const ServiceName = "fraud.FraudIngestion"

const shuttingDown = "the ingestion server is shutting down; resend unanswered transactions to a running server"

// Settings mirror fraudlab.ingest.service.ServiceSettings; the Python launcher validates them and passes them on.
type Settings struct {
	Bootstrap       string
	Topic           string
	Partitions      int
	Host            string
	Port            int
	TLSCert         string
	TLSKey          string
	Tokens          []string
	RateLimit       float64
	RateBurst       float64
	DedupWindow     time.Duration
	DedupCapacity   int
	RedisURL        string
	RedisPrefix     string
	RedisLease      time.Duration
	RedisTimeout    time.Duration
	LuaDir          string
	ReusePort       bool
	MaxMessageBytes int
	AckTimeout      time.Duration
	Grace           time.Duration
	FlushTimeout    time.Duration
	MaxFutureMS     int64
	StreamWindow    int
	StartupTimeout  time.Duration
	Linger          time.Duration
}

// Server is one running gateway: the gRPC server, health, the producer and the dedup and rate-limit state.
type Server struct {
	settings    Settings
	grpc        *grpc.Server
	health      *health.Server
	publisher   *Publisher
	redis       *RedisState
	dedup       Dedup
	limiter     RateLimiter
	listener    net.Listener
	draining    atomic.Bool
	drained     chan struct{}
	mu          sync.Mutex
	unreachable map[string]bool
}

// Start connects Redis, makes sure the topic exists, binds and serves. Errors are the configuration's, worded for
// the person who started the server.
func Start(settings Settings) (*Server, error) {
	s := &Server{settings: settings, drained: make(chan struct{}), unreachable: map[string]bool{}}
	if err := s.openState(); err != nil {
		return nil, err
	}
	publisher, err := NewPublisher(settings.Bootstrap, settings.Topic, settings.Linger, func(up bool) { s.availability("Kafka", up) })
	if err == nil {
		err = publisher.EnsureTopic(settings.Partitions, settings.StartupTimeout)
		if err != nil {
			publisher.Close(0)
		}
	}
	if err != nil {
		s.closeState()
		return nil, fmt.Errorf("Kafka at %s %v: start the broker (`fraudlab broker up`) or point --bootstrap / "+
			"KAFKA_BROKER at a running one.", settings.Bootstrap, err)
	}
	s.publisher = publisher
	if err := s.listen(); err != nil {
		publisher.Close(0)
		s.closeState()
		return nil, err
	}
	options := []grpc.ServerOption{
		grpc.ForceServerCodec(frameCodec{}),
		grpc.MaxRecvMsgSize(settings.MaxMessageBytes),
		grpc.MaxSendMsgSize(settings.MaxMessageBytes),
	}
	if len(settings.Tokens) > 0 {
		options = append(options, grpc.ChainUnaryInterceptor(s.authorizeUnary),
			grpc.ChainStreamInterceptor(s.authorizeStream))
	}
	if settings.TLSCert != "" {
		creds, err := credentials.NewServerTLSFromFile(settings.TLSCert, settings.TLSKey)
		if err != nil {
			s.listener.Close()
			publisher.Close(0)
			s.closeState()
			return nil, fmt.Errorf("tls_cert=%s and tls_key=%s cannot be used: %v", settings.TLSCert, settings.TLSKey, err)
		}
		options = append(options, grpc.Creds(creds))
	}
	s.grpc = grpc.NewServer(options...)
	s.grpc.RegisterService(&serviceDesc, s)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	for _, service := range []string{"", ServiceName} {
		s.health.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	}
	publisher.Start()
	go func() { _ = s.grpc.Serve(s.listener) }()
	return s, nil
}

func (s *Server) openState() error {
	settings := s.settings
	if settings.RedisURL == "" {
		s.dedup = NewMemoryDedup(settings.DedupWindow, settings.DedupCapacity)
		if settings.RateLimit > 0 {
			s.limiter = NewMemoryRateLimiter(settings.RateLimit, settings.RateBurst)
		}
		return nil
	}
	scripts, err := LoadScripts(settings.LuaDir)
	if err != nil {
		return err
	}
	state, err := OpenRedis(settings.RedisURL, settings.RedisPrefix, settings.RedisLease, settings.RedisTimeout, scripts,
		func(up bool) { s.availability("Redis", up) })
	if err != nil {
		return err
	}
	s.redis = state
	s.dedup = NewRedisDedup(state, settings.DedupWindow)
	if settings.RateLimit > 0 {
		s.limiter = NewRedisRateLimiter(state, settings.RateLimit, settings.RateBurst)
	}
	return nil
}

func (s *Server) closeState() {
	if s.dedup != nil {
		s.dedup.Close()
	}
	if s.redis != nil {
		s.redis.Close()
	}
}

func (s *Server) listen() error {
	address := net.JoinHostPort(s.settings.Host, fmt.Sprint(s.settings.Port))
	config := net.ListenConfig{}
	if s.settings.ReusePort {
		config.Control = func(_, _ string, conn syscall.RawConn) error {
			var sockErr error
			err := conn.Control(func(fd uintptr) {
				sockErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return errors.Join(err, sockErr)
		}
	}
	listener, err := config.Listen(context.Background(), "tcp", address)
	if err != nil {
		return fmt.Errorf("Cannot listen on %s (%v): the port is taken or the host is not local; choose another "+
			"with --port / --host.", address, err)
	}
	s.listener = listener
	return nil
}

// Port is the bound TCP port (the chosen one when --port 0).
func (s *Server) Port() int { return s.listener.Addr().(*net.TCPAddr).Port }

// Describe is the line both servers print once they listen (the supervisor waits for its first words).
func (s *Server) Describe() string {
	settings := s.settings
	security, auth, state := "plaintext", "no authentication", "state in memory"
	if settings.TLSCert != "" {
		security = "TLS"
	}
	if len(settings.Tokens) > 0 {
		auth = "bearer tokens"
	}
	if settings.RedisURL != "" {
		state = "shared state in Redis " + Redacted(settings.RedisURL)
	}
	return fmt.Sprintf("fraudlab ingestion listening on %s:%d (%s, %s, %s); publishing to Kafka %s topic %s "+
		"[Go gateway]", settings.Host, s.Port(), security, auth, state, settings.Bootstrap, PyStr(settings.Topic))
}

// availability keeps health SERVING only while Kafka and Redis are both reachable.
func (s *Server) availability(dependency string, reachable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reachable {
		delete(s.unreachable, dependency)
	} else {
		s.unreachable[dependency] = true
	}
	if s.draining.Load() {
		return
	}
	status := healthpb.HealthCheckResponse_SERVING
	if len(s.unreachable) > 0 {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, service := range []string{"", ServiceName} {
		s.health.SetServingStatus(service, status)
	}
}

// Stop shuts down gracefully: health NOT_SERVING, streams stop reading and answer what they published, in-flight
// calls get the grace period, the producer flushes. It returns how many records Kafka had not confirmed.
func (s *Server) Stop() int64 {
	s.mu.Lock()
	s.draining.Store(true)
	s.health.Shutdown()
	close(s.drained)
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(s.settings.Grace):
		s.grpc.Stop()
	}
	unconfirmed := s.publisher.Close(s.settings.FlushTimeout)
	s.closeState()
	if unconfirmed > 0 {
		log.Printf("%d records were still unconfirmed by Kafka at shutdown (none of them was acknowledged)", unconfirmed)
	}
	return unconfirmed
}

// ---------------------------------------------------------------------------- bearer tokens

func (s *Server) authorized(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return false
	}
	scheme, token, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "bearer") {
		return false
	}
	candidate := []byte(strings.TrimSpace(token))
	accepted := false
	for _, known := range s.settings.Tokens {
		if subtle.ConstantTimeCompare(candidate, []byte(known)) == 1 {
			accepted = true
		}
	}
	return accepted
}

func exempt(method string) bool { return strings.HasPrefix(method, "/grpc.health.v1.Health/") }

func refusal(method string) error {
	return status.Errorf(codes.Unauthenticated,
		"%s needs a valid bearer token: send metadata 'authorization: Bearer <token>'", method)
}

func (s *Server) authorizeUnary(ctx context.Context, request any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	if !exempt(info.FullMethod) && !s.authorized(ctx) {
		return nil, refusal(info.FullMethod)
	}
	return handler(ctx, request)
}

func (s *Server) authorizeStream(server any, stream grpc.ServerStream, info *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	if !exempt(info.FullMethod) && !s.authorized(stream.Context()) {
		return refusal(info.FullMethod)
	}
	return handler(server, stream)
}

// ---------------------------------------------------------------------------- frames and parsing

// frame is a request body kept as bytes: the handler parses it, so a body that is not the expected message is
// answered INVALID_ARGUMENT as the Python server does (grpc-go's codec would answer INTERNAL).
type frame struct{ data []byte }

// frameCodec passes frames through and marshals every other message (responses, health, reflection) as protobuf.
type frameCodec struct{}

func (frameCodec) Name() string { return "proto" }

func (frameCodec) Marshal(v any) ([]byte, error) {
	if f, ok := v.(*frame); ok {
		return f.data, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (frameCodec) Unmarshal(data []byte, v any) error {
	if f, ok := v.(*frame); ok {
		f.data = append([]byte(nil), data...)
		return nil
	}
	return proto.Unmarshal(data, v.(proto.Message))
}

// unparseable words a parse failure as the Python server does (its protobuf runtime, upb, names two reasons).
func unparseable(expected string, err error) error {
	reason := "Wire format was corrupt"
	if strings.Contains(err.Error(), "UTF-8") {
		reason = "String field had bad UTF-8"
	}
	return status.Errorf(codes.InvalidArgument, "the request is not a %s: Error parsing message with type '%s': %s; "+
		"send a serialized %s", expected, expected, reason, expected)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "SendTransaction",
		Handler: func(srv any, ctx context.Context, decode func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			request := &frame{}
			if err := decode(request); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, request any) (any, error) {
				return srv.(*Server).SendTransaction(ctx, request.(*frame))
			}
			if interceptor == nil {
				return call(ctx, request)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ServiceName + "/SendTransaction"}
			return interceptor(ctx, request, info, call)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "StreamTransactions",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(*Server).StreamTransactions(stream)
		},
	}},
	Metadata: "fraudlab/schema/proto/fraud.proto",
}

// ---------------------------------------------------------------------------- the RPCs

// SendTransaction validates one transaction and publishes it; success only after Kafka confirmed it.
func (s *Server) SendTransaction(ctx context.Context, request *frame) (*fraudpb.IngestionResponse, error) {
	message := &fraudpb.TransactionRequest{}
	if err := proto.Unmarshal(request.data, message); err != nil {
		return nil, unparseable("fraud.TransactionRequest", err)
	}
	if s.draining.Load() {
		return nil, status.Error(codes.Unavailable, shuttingDown)
	}
	admission := s.admit([]*fraudpb.TransactionRequest{message}, 0)
	if len(admission.errors) > 0 {
		first := admission.errors[0]
		code := codes.InvalidArgument
		if first.Code == "RESOURCE_EXHAUSTED" {
			code = codes.ResourceExhausted
		}
		return nil, status.Error(code, first.Message)
	}
	if err := s.settle(ctx, admission); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if admission.duplicates > 0 {
		return &fraudpb.IngestionResponse{Success: true, Message: fmt.Sprintf(
			"duplicate transaction_id %s: already published, not published again", PyStr(message.TransactionId))}, nil
	}
	where := ""
	if admission.delivery != nil {
		if partition, offset, ok := admission.delivery.last(); ok {
			where = fmt.Sprintf(" partition %d offset %d", partition, offset)
		}
	}
	return &fraudpb.IngestionResponse{Success: true, Message: "published to " + s.settings.Topic + where}, nil
}

// StreamTransactions answers every batch in order once Kafka confirmed it, with up to StreamWindow batches published
// and not yet answered; it ends UNAVAILABLE when Kafka or Redis cannot be reached, or when the server drains.
func (s *Server) StreamTransactions(stream grpc.ServerStream) error {
	if s.draining.Load() {
		return status.Error(codes.Unavailable, shuttingDown)
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	window := make(chan struct{}, s.settings.StreamWindow)
	admitted := make(chan *admission, s.settings.StreamWindow+1)
	var readError error
	go s.readBatches(stream, window, admitted, &readError)
	for {
		var next *admission
		var open bool
		select {
		case next, open = <-admitted:
		case <-s.drained:
			return s.answerQueued(stream, admitted)
		}
		if !open {
			break
		}
		if next.malformed != nil {
			return unparseable("fraud.TransactionBatch", next.malformed)
		}
		if err := s.settle(stream.Context(), next); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		if err := stream.SendMsg(next.response()); err != nil {
			return err
		}
		<-window
	}
	if s.draining.Load() {
		return status.Error(codes.Unavailable, shuttingDown)
	}
	return readError
}

// answerQueued answers what a draining stream already admitted, then ends it UNAVAILABLE.
func (s *Server) answerQueued(stream grpc.ServerStream, admitted chan *admission) error {
	for {
		select {
		case next, open := <-admitted:
			if !open || next.malformed != nil {
				return status.Error(codes.Unavailable, shuttingDown)
			}
			if err := s.settle(stream.Context(), next); err != nil {
				return status.Error(codes.Unavailable, err.Error())
			}
			if err := stream.SendMsg(next.response()); err != nil {
				return err
			}
		default:
			return status.Error(codes.Unavailable, shuttingDown)
		}
	}
}

// readBatches reads, admits and queues batches while the window has room; once the server drains it admits nothing
// more (an unread or unadmitted batch is simply not answered, and safe to resend).
func (s *Server) readBatches(stream grpc.ServerStream, window chan struct{}, admitted chan *admission, failure *error) {
	defer close(admitted)
	for {
		select {
		case window <- struct{}{}:
		case <-s.drained:
			return
		case <-stream.Context().Done():
			return
		}
		request := &frame{}
		if err := stream.RecvMsg(request); err != nil {
			if err != io.EOF {
				*failure = err
			}
			return
		}
		batch := &fraudpb.TransactionBatch{}
		if err := proto.Unmarshal(request.data, batch); err != nil {
			admitted <- &admission{malformed: err}
			return
		}
		if s.draining.Load() {
			return
		}
		next := s.admit(batch.Transactions, batch.BatchId)
		admitted <- next
		if next.unavailable != nil {
			return
		}
	}
}
