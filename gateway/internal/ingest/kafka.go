package ingest

import (
	"context"
	"fmt"
	"hash/crc32"
	"log"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EventTimeHeader carries a transaction's event time (decimal epoch milliseconds), as fraudlab.config names it.
const EventTimeHeader = "event_time"

const (
	probeInterval = 500 * time.Millisecond
	probeTimeout  = time.Second
)

// Delivery is Kafka's verdict on one group of records published together. Done closes once every record was
// confirmed or refused, or at once when the group was given up before publishing (Release of all of it).
type Delivery struct {
	mu        sync.Mutex
	expected  int
	confirmed int
	failures  map[string]string // transaction_id -> Kafka's reason
	released  map[string]bool   // claimed here, then not published (rate-limited, Kafka unreachable)
	done      chan struct{}
	closed    bool
	partition int32
	offset    int64
	hasLast   bool
}

// NewDelivery is an empty verdict, created before a batch's ids are claimed so that claims can point at it.
func NewDelivery() *Delivery { return &Delivery{done: make(chan struct{})} }

// Done is closed once the verdict is complete.
func (d *Delivery) Done() <-chan struct{} { return d.done }

func (d *Delivery) expect(count int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expected = count
	d.settleLocked()
}

func (d *Delivery) record(transactionID string, r *kgo.Record, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		if d.failures == nil {
			d.failures = map[string]string{}
		}
		d.failures[transactionID] = err.Error()
	} else {
		d.confirmed++
		d.partition, d.offset, d.hasLast = r.Partition, r.Offset, true
	}
	d.settleLocked()
}

// release marks ids as given up without publishing; a delivery that publishes nothing is complete at once.
func (d *Delivery) release(ids []string, all bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.released == nil {
		d.released = map[string]bool{}
	}
	for _, id := range ids {
		d.released[id] = true
	}
	if all {
		d.closeLocked()
	}
}

func (d *Delivery) settleLocked() {
	if d.expected > 0 && d.confirmed+len(d.failures) == d.expected {
		d.closeLocked()
	}
}

func (d *Delivery) closeLocked() {
	if !d.closed {
		d.closed = true
		close(d.done)
	}
}

// outcome reads the verdict on one id: released, failed (with Kafka's reason) or confirmed.
func (d *Delivery) outcome(id string) (released bool, failure string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.released[id], d.failures[id]
}

func (d *Delivery) complete() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// failed returns the ids Kafka refused and up to three distinct reasons, as the Python server reports them.
func (d *Delivery) failed() ([]string, string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make([]string, 0, len(d.failures))
	reasons := map[string]bool{}
	for id, reason := range d.failures {
		ids = append(ids, id)
		reasons[reason] = true
	}
	distinct := make([]string, 0, len(reasons))
	for reason := range reasons {
		distinct = append(distinct, reason)
	}
	sort.Strings(distinct)
	if len(distinct) > 3 {
		distinct = distinct[:3]
	}
	return ids, strings.Join(distinct, "; ")
}

func (d *Delivery) last() (int32, int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.partition, d.offset, d.hasLast
}

// Publisher is the durable producer (acks=all, idempotent, lz4, a short linger) and whether a broker is reachable.
type Publisher struct {
	Bootstrap      string
	topic          string
	client         *kgo.Client
	available      atomic.Bool
	onAvailability func(bool)
	stop           chan struct{}
	stopped        sync.WaitGroup
}

// partitionLikeLibrdkafka places a keyed record where librdkafka's default partitioner (consistent_random: CRC32 of
// the key) does, so a user's transactions land in the same partition whichever server published them.
func partitionLikeLibrdkafka(string) func(r *kgo.Record, n int) int {
	return func(r *kgo.Record, n int) int { return int(crc32.ChecksumIEEE(r.Key) % uint32(n)) }
}

// NewPublisher connects the producer (lazily: franz-go dials on first use).
func NewPublisher(bootstrap, topic string, linger time.Duration, onAvailability func(bool)) (*Publisher, error) {
	p := &Publisher{Bootstrap: bootstrap, topic: topic, onAvailability: onAvailability, stop: make(chan struct{})}
	p.available.Store(true)
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(linger),
		kgo.MaxBufferedRecords(500_000),
		kgo.RecordDeliveryTimeout(300*time.Second), // librdkafka's message.timeout.ms, as the Python server has it
		kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(partitionLikeLibrdkafka)),
	)
	if err != nil {
		return nil, err
	}
	p.client = client
	return p, nil
}

// EnsureTopic creates the topic with `partitions` partitions (replication 1) if it is missing, and waits until every
// partition has a leader.
func (p *Publisher) EnsureTopic(partitions int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	admin := kadm.NewClient(p.client)
	for {
		details, err := admin.ListTopics(ctx, p.topic)
		if err == nil {
			topic, known := details[p.topic]
			switch {
			case !known || topic.Err != nil && strings.Contains(topic.Err.Error(), "UNKNOWN_TOPIC"):
				created, createErr := admin.CreateTopic(ctx, int32(partitions), 1, nil, p.topic)
				if createErr == nil && created.Err != nil && !strings.Contains(created.Err.Error(), "TOPIC_ALREADY_EXISTS") {
					return fmt.Errorf("refused to create or describe the topic (%v)", created.Err)
				}
			case topic.Err == nil && leadersElected(topic):
				return nil
			}
		}
		select {
		case <-ctx.Done():
			reason := "no leader for every partition yet"
			if err != nil {
				reason = err.Error()
			}
			return fmt.Errorf("did not answer within %s s (%s)", PyG(timeout.Seconds()), reason)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func leadersElected(topic kadm.TopicDetail) bool {
	if len(topic.Partitions) == 0 {
		return false
	}
	for _, partition := range topic.Partitions {
		if partition.Err != nil || partition.Leader < 0 {
			return false
		}
	}
	return true
}

// Start begins watching the broker's reachability: a metadata-free ApiVersions round trip every half second (the
// Python server probes only after librdkafka reported all brokers down; franz-go reports no such event).
func (p *Publisher) Start() {
	p.stopped.Add(1)
	go p.watch()
}

func (p *Publisher) watch() {
	defer p.stopped.Done()
	everyTick(probeInterval, p.stop, func() {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		reachable := p.client.Ping(ctx) == nil
		cancel()
		if reachable != p.available.Load() {
			p.available.Store(reachable)
			state := "unreachable"
			if reachable {
				state = "reachable"
			}
			log.Printf("Kafka at %s became %s", p.Bootstrap, state)
			p.onAvailability(reachable)
		}
	})
}

// everyTick runs work every interval until stop closes: the loop of both availability watchers (Kafka, Redis).
func everyTick(interval time.Duration, stop <-chan struct{}, work func()) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			work()
		}
	}
}

// Publish queues one record per message (key the user id, the event-time header set) and reports each verdict to d.
// It refuses at once, publishing nothing, while no broker is reachable.
func (p *Publisher) Publish(values [][]byte, keys []int64, stamps []int64, ids []string, d *Delivery) error {
	if !p.available.Load() {
		return &UnavailableError{fmt.Sprintf("Kafka at %s is unreachable (all brokers down); nothing was published, "+
			"retry later.", p.Bootstrap)}
	}
	d.expect(len(values))
	for i, value := range values {
		id := ids[i]
		record := &kgo.Record{
			Key:     []byte(strconv.FormatInt(keys[i], 10)),
			Value:   value,
			Headers: []kgo.RecordHeader{{Key: EventTimeHeader, Value: []byte(strconv.FormatInt(stamps[i], 10))}},
		}
		p.client.Produce(context.Background(), record, func(r *kgo.Record, err error) { d.record(id, r, err) })
	}
	return nil
}

// Close flushes for up to `timeout` and returns how many records Kafka had still not confirmed.
func (p *Publisher) Close(timeout time.Duration) int64 {
	close(p.stop)
	p.stopped.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = p.client.Flush(ctx)
	remaining := p.client.BufferedProduceRecords()
	p.client.Close()
	return remaining
}
