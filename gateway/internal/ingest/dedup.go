package ingest

import (
	"context"
	"fmt"
	"log"
	"sync"
	"sync/atomic"
	"time"
)

// Claim is what a claim on one transaction id found (the codes dedup_claim.lua returns, dead-owner takeover folded
// into New), as in fraudlab/ingest/dedup.py.
type Claim int

const (
	// New: nobody has it; publish it.
	New Claim = iota
	// Published: Kafka confirmed it within the window; acknowledge it as a duplicate.
	Published
	// Pending: a live publisher has it in flight; wait for its verdict.
	Pending
)

const (
	firstPoll = 2 * time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// Dedup is one server's view of which ids were published: claim, publish what is new, track or release.
type Dedup interface {
	// Claim claims distinct ids for d, one Claim each, in order.
	Claim(ctx context.Context, ids []string, d *Delivery) ([]Claim, error)
	// Track records d's verdict on claimed ids; the channel closes once it is recorded.
	Track(ids []string, d *Delivery) <-chan struct{}
	// Release gives up claims that were not published, so a retry can publish them.
	Release(ids []string, d *Delivery, all bool)
	// Wait waits until the Pending ids are confirmed, by deadline at the latest.
	Wait(ctx context.Context, ids []string, deadline time.Time) error
	Close()
}

func notConfirmed(id, why string) error {
	return &UnavailableError{fmt.Sprintf("the earlier copy of transaction %s %s; resend it later", PyStr(id), why)}
}

type memoryBatch struct {
	created  time.Time
	delivery *Delivery
	ids      []string
}

// MemoryDedup is this process's published ids, bounded in time and count; never forgetting an id in flight, since a
// retry could then publish it a second time. A claim points the new ids at their delivery at once, so two calls
// racing with one id cannot both publish it.
type MemoryDedup struct {
	mu       sync.Mutex
	window   time.Duration
	capacity int
	ids      map[string]*Delivery
	batches  []memoryBatch
}

// NewMemoryDedup remembers ids for `window`, at most `capacity` of them.
func NewMemoryDedup(window time.Duration, capacity int) *MemoryDedup {
	return &MemoryDedup{window: window, capacity: capacity, ids: map[string]*Delivery{}}
}

func (m *MemoryDedup) Claim(_ context.Context, ids []string, d *Delivery) ([]Claim, error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expire(now)
	claims := make([]Claim, len(ids))
	var fresh []string
	for i, id := range ids {
		claims[i] = m.state(id)
		if claims[i] == New {
			m.ids[id] = d
			fresh = append(fresh, id)
		}
	}
	if fresh != nil {
		m.batches = append(m.batches, memoryBatch{now, d, fresh})
	}
	return claims, nil
}

func (m *MemoryDedup) state(id string) Claim {
	holder, known := m.ids[id]
	if !known {
		return New
	}
	released, failure := holder.outcome(id)
	if released || failure != "" {
		return New
	}
	if holder.complete() {
		return Published
	}
	return Pending
}

func (m *MemoryDedup) Track(_ []string, d *Delivery) <-chan struct{} { return d.Done() }

func (m *MemoryDedup) Release(ids []string, d *Delivery, all bool) {
	d.release(ids, all)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		if m.ids[id] == d {
			delete(m.ids, id)
		}
	}
}

func (m *MemoryDedup) Wait(ctx context.Context, ids []string, deadline time.Time) error {
	m.mu.Lock()
	holders := make([]*Delivery, len(ids))
	for i, id := range ids {
		holders[i] = m.ids[id]
	}
	m.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for i, holder := range holders {
		if holder == nil {
			continue
		}
		select {
		case <-holder.Done():
		case <-timer.C:
			return notConfirmed(ids[i], "was not confirmed by Kafka in time")
		case <-ctx.Done():
			return ctx.Err()
		}
		released, failure := holder.outcome(ids[i])
		if released {
			return notConfirmed(ids[i], "was not published (its publisher released it)")
		}
		if failure != "" {
			return notConfirmed(ids[i], fmt.Sprintf("was not confirmed by Kafka (%s)", failure))
		}
	}
	return nil
}

// expire forgets the oldest batches past the window or the capacity, stopping at one still in flight.
func (m *MemoryDedup) expire(now time.Time) {
	horizon := now.Add(-m.window)
	dropped := 0
	for _, batch := range m.batches {
		if !batch.delivery.complete() || batch.created.After(horizon) && len(m.ids) <= m.capacity {
			break
		}
		for _, id := range batch.ids {
			if m.ids[id] == batch.delivery {
				delete(m.ids, id)
			}
		}
		dropped++
	}
	if dropped > 0 {
		m.batches = append(m.batches[:0:0], m.batches[dropped:]...)
	}
}

func (m *MemoryDedup) Close() {}

// RedisDedup is the per-id state machine of dedup_claim.lua and dedup_settle.lua, shared by every worker of either
// implementation: one claim and one settle call per batch. As in fraudlab/ingest/dedup.py, each claim call is named
// in the pending value, and a claim whose answer never came (Redis may still have run it) is undone in the
// background: otherwise its ids stay pending on a live owner and every resend waits in vain until the window ends.
type RedisDedup struct {
	state        *RedisState
	windowMS     int64
	recording    sync.WaitGroup
	claimSerials atomic.Uint64
	mu           sync.Mutex
	claimants    map[string]string // id -> the claim call holding it, until its verdict is settled
}

// NewRedisDedup shares published ids through `state` for `window`.
func NewRedisDedup(state *RedisState, window time.Duration) *RedisDedup {
	return &RedisDedup{state: state, windowMS: window.Milliseconds(), claimants: map[string]string{}}
}

func (r *RedisDedup) keys(ids []string) []string {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.state.Key("dedup", id)
	}
	return keys
}

func (r *RedisDedup) codes(ctx context.Context, ids []string, mode, claimant string) ([]int64, error) {
	return r.state.Run(ctx, "dedup_claim", r.keys(ids), claimant, r.windowMS, r.state.LeasePrefix(), mode)
}

func (r *RedisDedup) Claim(ctx context.Context, ids []string, _ *Delivery) ([]Claim, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	claimant := fmt.Sprintf("%s:%d", r.state.Owner, r.claimSerials.Add(1))
	codes, err := r.codes(ctx, ids, "claim", claimant)
	if err != nil {
		r.background(func() { r.settle(ids, claimant, flagsOf(len(ids), "0")) })
		return nil, err
	}
	claims := make([]Claim, len(codes))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, code := range codes {
		switch code {
		case 0, 3:
			claims[i] = New
			r.claimants[ids[i]] = claimant
		default:
			claims[i] = Claim(code)
		}
	}
	return claims, nil
}

func flagsOf(n int, flag string) []string {
	flags := make([]string, n)
	for i := range flags {
		flags[i] = flag
	}
	return flags
}

func (r *RedisDedup) Track(ids []string, d *Delivery) <-chan struct{} {
	recorded := make(chan struct{})
	r.background(func() {
		<-d.Done()
		flags := flagsOf(len(ids), "1")
		for i, id := range ids {
			if released, failure := d.outcome(id); released || failure != "" {
				flags[i] = "0"
			}
		}
		r.settleClaimed(ids, flags)
		close(recorded)
	})
	return recorded
}

func (r *RedisDedup) Release(ids []string, d *Delivery, all bool) {
	d.release(ids, all)
	if len(ids) == 0 {
		return
	}
	r.background(func() { r.settleClaimed(ids, flagsOf(len(ids), "0")) })
}

// background runs work in a goroutine that Close waits for.
func (r *RedisDedup) background(work func()) {
	r.recording.Add(1)
	go func() {
		defer r.recording.Done()
		work()
	}()
}

// settleClaimed settles ids claimed New, one call per claim call they came from (one, for a batch the server
// admits). An id without an entry gets the bare owner, which no pending value matches.
func (r *RedisDedup) settleClaimed(ids, flags []string) {
	type group struct{ ids, flags []string }
	var order []string
	groups := map[string]*group{}
	r.mu.Lock()
	for i, id := range ids {
		claimant, ok := r.claimants[id]
		if !ok {
			claimant = r.state.Owner
		}
		delete(r.claimants, id)
		g := groups[claimant]
		if g == nil {
			g = &group{}
			groups[claimant] = g
			order = append(order, claimant)
		}
		g.ids, g.flags = append(g.ids, id), append(g.flags, flags[i])
	}
	r.mu.Unlock()
	for _, claimant := range order {
		r.settle(groups[claimant].ids, claimant, groups[claimant].flags)
	}
}

// settle records a verdict, retried until Redis answers: a verdict lost would leave ids pending on a live owner.
// It gives up when the state closes (the owner's lease then runs out and another worker takes over).
func (r *RedisDedup) settle(ids []string, claimant string, flags []string) {
	args := []any{claimant, r.windowMS}
	for _, flag := range flags {
		args = append(args, flag)
	}
	delay := maxPoll
	for {
		_, err := r.state.Run(context.Background(), "dedup_settle", r.keys(ids), args...)
		if err == nil || r.state.Closed() {
			return
		}
		log.Printf("recording a verdict waits for Redis: %v", err)
		time.Sleep(delay)
		delay = min(delay*2, r.state.Lease/3)
	}
}

func (r *RedisDedup) Wait(ctx context.Context, ids []string, deadline time.Time) error {
	remaining := ids
	delay := firstPoll
	for {
		codes, err := r.codes(ctx, remaining, "peek", r.state.Owner+":")
		if err != nil {
			return err
		}
		var still []string
		for i, code := range codes {
			switch code {
			case 0:
				return notConfirmed(remaining[i], "was not published (its publisher released it)")
			case 3:
				return notConfirmed(remaining[i], "was abandoned by a worker that stopped")
			case 2:
				still = append(still, remaining[i])
			}
		}
		if len(still) == 0 {
			return nil
		}
		remaining = still
		if time.Now().Add(delay).After(deadline) {
			return notConfirmed(remaining[0], "was not confirmed by Kafka in time")
		}
		time.Sleep(delay)
		delay = min(delay*2, maxPoll)
	}
}

// Close waits up to one lease for verdicts still being recorded.
func (r *RedisDedup) Close() {
	finished := make(chan struct{})
	go func() { r.recording.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(r.state.Lease):
	}
}
