package ingest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"fraudlab/gateway/internal/fraudpb"
)

// admission is a batch after validation, deduplication and rate limiting: what was published and what to await.
type admission struct {
	batchID     uint64
	count       int
	started     time.Time
	delivery    *Delivery
	recorded    <-chan struct{}
	waits       []string
	errors      []*fraudpb.RecordError
	duplicates  int
	unavailable error
	malformed   error // the request did not parse
}

func (a *admission) response() *fraudpb.BatchResponse {
	rejected := len(a.errors)
	return &fraudpb.BatchResponse{BatchId: a.batchID, Accepted: uint32(a.count - rejected),
		Duplicates: uint32(a.duplicates), Rejected: uint32(rejected), Errors: a.errors}
}

type candidate struct {
	index   int
	message *fraudpb.TransactionRequest
}

// admit validates, drops repeats, rate-limits and publishes one batch, as the Python server's _admission does. Its
// Redis calls follow no caller's context: claims taken are then always published and recorded, or released.
func (s *Server) admit(transactions []*fraudpb.TransactionRequest, batchID uint64) *admission {
	ctx := context.Background()
	a := &admission{batchID: batchID, count: len(transactions), started: time.Now()}
	candidates := s.validated(transactions, a)
	if len(candidates) == 0 {
		return a
	}
	ids := make([]string, len(candidates))
	for i, c := range candidates {
		ids[i] = c.message.TransactionId
	}
	delivery := NewDelivery()
	claims, err := s.dedup.Claim(ctx, ids, delivery)
	if err != nil {
		a.unavailable = err
		return a
	}
	var fresh []candidate
	for i, claim := range claims {
		switch claim {
		case New:
			fresh = append(fresh, candidates[i])
		case Pending:
			a.duplicates++
			a.waits = append(a.waits, ids[i])
		default:
			a.duplicates++
		}
	}
	fresh, err = s.rateLimited(ctx, fresh, a, delivery)
	if err != nil {
		s.dedup.Release(idsOf(fresh), delivery, true)
		a.unavailable = err
		return a
	}
	if len(fresh) == 0 {
		delivery.release(nil, true)
		return a
	}
	s.publish(fresh, a, delivery)
	return a
}

func idsOf(entries []candidate) []string {
	ids := make([]string, len(entries))
	for i, entry := range entries {
		ids[i] = entry.message.TransactionId
	}
	return ids
}

// validated returns the valid records, first copy of each id; the invalid ones become errors.
func (s *Server) validated(transactions []*fraudpb.TransactionRequest, a *admission) []candidate {
	latest := time.Now().UnixMilli() + s.settings.MaxFutureMS
	seen := make(map[string]bool, len(transactions))
	candidates := make([]candidate, 0, len(transactions))
	for index, message := range transactions {
		id := message.TransactionId
		if problems := Problems(message, latest); problems != nil {
			a.errors = append(a.errors, &fraudpb.RecordError{Index: uint32(index), TransactionId: id,
				Code: "INVALID_ARGUMENT", Message: "transaction " + PyStr(id) + ": " + strings.Join(problems, "; ")})
		} else if seen[id] {
			a.duplicates++
		} else {
			seen[id] = true
			candidates = append(candidates, candidate{index, message})
		}
	}
	return candidates
}

// rateLimited returns the records the users' buckets admit, in order; the others are RESOURCE_EXHAUSTED, released.
func (s *Server) rateLimited(ctx context.Context, fresh []candidate, a *admission, d *Delivery) ([]candidate, error) {
	if s.limiter == nil || len(fresh) == 0 {
		return fresh, nil
	}
	position := map[int64]int{}
	var users, wanted []int64
	for _, entry := range fresh {
		user := entry.message.UserId
		if at, known := position[user]; known {
			wanted[at]++
		} else {
			position[user] = len(users)
			users = append(users, user)
			wanted = append(wanted, 1)
		}
	}
	granted, err := s.limiter.Grant(ctx, users, wanted)
	if err != nil {
		return fresh, err
	}
	var admitted, refused []candidate
	for _, entry := range fresh {
		at := position[entry.message.UserId]
		if granted[at] > 0 {
			granted[at]--
			admitted = append(admitted, entry)
		} else {
			refused = append(refused, entry)
		}
	}
	for _, entry := range refused {
		a.errors = append(a.errors, &fraudpb.RecordError{Index: uint32(entry.index),
			TransactionId: entry.message.TransactionId, Code: "RESOURCE_EXHAUSTED", Message: fmt.Sprintf(
				"user_id=%d exceeded the rate limit of %s transactions/s (burst %s); resend later",
				entry.message.UserId, PyG(s.limiter.Rate()), PyG(s.limiter.Burst()))})
	}
	if len(refused) > 0 {
		sort.SliceStable(a.errors, func(i, j int) bool { return a.errors[i].Index < a.errors[j].Index })
		s.dedup.Release(idsOf(refused), d, len(admitted) == 0)
	}
	return admitted, nil
}

func (s *Server) publish(fresh []candidate, a *admission, d *Delivery) {
	values := make([][]byte, len(fresh))
	keys := make([]int64, len(fresh))
	stamps := make([]int64, len(fresh))
	for i, entry := range fresh {
		values[i], _ = proto.MarshalOptions{Deterministic: true}.Marshal(entry.message)
		keys[i], stamps[i] = entry.message.UserId, entry.message.Timestamp
	}
	ids := idsOf(fresh)
	if err := s.publisher.Publish(values, keys, stamps, ids, d); err != nil {
		s.dedup.Release(ids, d, true)
		a.unavailable = err
		return
	}
	a.delivery = d
	a.recorded = s.dedup.Track(ids, d)
}

// settle waits for Kafka's verdict on everything the admission depends on, and for its own to be recorded.
func (s *Server) settle(ctx context.Context, a *admission) error {
	if a.unavailable != nil {
		return a.unavailable
	}
	deadline := a.started.Add(s.settings.AckTimeout)
	if len(a.waits) > 0 {
		if err := s.dedup.Wait(ctx, a.waits, deadline); err != nil {
			return err
		}
	}
	own := a.delivery
	if own == nil {
		return nil
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-own.Done():
	case <-timer.C:
		return &UnavailableError{fmt.Sprintf("Kafka at %s did not confirm within %s s; the transactions were not "+
			"acknowledged, resend them later", s.publisher.Bootstrap, PyG(s.settings.AckTimeout.Seconds()))}
	case <-ctx.Done():
		return ctx.Err()
	}
	if failed, reasons := own.failed(); len(failed) > 0 {
		return &UnavailableError{fmt.Sprintf("Kafka at %s did not take %d transaction(s) (%s); they were not "+
			"acknowledged, resend them later", s.publisher.Bootstrap, len(failed), reasons)}
	}
	select {
	case <-a.recorded:
		return nil
	case <-timer.C:
		return &UnavailableError{"Kafka confirmed the transactions but Redis did not record them as published in " +
			"time; resend them later (they will be acknowledged as duplicates)"}
	}
}
