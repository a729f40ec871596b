package ingest

import (
	"context"
	"sync"
	"time"
)

// RateLimiter grants each user up to `burst` saved-up tokens, refilled at `rate` per second.
type RateLimiter interface {
	// Grant returns the tokens granted per user of `users` (in first-seen order) wanting `wanted[i]` tokens.
	Grant(ctx context.Context, users []int64, wanted []int64) ([]int64, error)
	Rate() float64
	Burst() float64
}

// bucketSlack is ratelimit.py's _SLACK_S and token_bucket.lua's: a microsecond, so the round-off of summed intervals
// never refuses the last token of a burst, and no rate below a million per second gains a token from it.
const bucketSlack = 1e-6

// MemoryRateLimiter keeps one number per user, the time its bucket is full again (the generic cell rate
// algorithm, which admits exactly what a token bucket admits), as ratelimit.TokenBuckets does.
type MemoryRateLimiter struct {
	mu        sync.Mutex
	rate      float64
	burst     float64
	interval  float64
	allowance float64
	fullAt    map[int64]float64
	nextPrune float64
	epoch     time.Time
}

// NewMemoryRateLimiter is a limiter of this process.
func NewMemoryRateLimiter(rate, burst float64) *MemoryRateLimiter {
	return &MemoryRateLimiter{rate: rate, burst: burst, interval: 1 / rate, allowance: (burst-1)/rate + bucketSlack,
		fullAt: map[int64]float64{}, epoch: time.Now()}
}

func (m *MemoryRateLimiter) Rate() float64  { return m.rate }
func (m *MemoryRateLimiter) Burst() float64 { return m.burst }

// take spends one token of user's bucket at time now (seconds); false when it is empty.
func (m *MemoryRateLimiter) take(user int64, now float64) bool {
	full, known := m.fullAt[user]
	if !known || full < now {
		full = now
	}
	if full-now > m.allowance {
		return false
	}
	m.fullAt[user] = full + m.interval
	return true
}

func (m *MemoryRateLimiter) Grant(_ context.Context, users []int64, wanted []int64) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Since(m.epoch).Seconds()
	if now >= m.nextPrune {
		m.nextPrune = now + 5
		for user, full := range m.fullAt {
			if full <= now {
				delete(m.fullAt, user)
			}
		}
	}
	granted := make([]int64, len(users))
	for i, user := range users {
		for granted[i] < wanted[i] && m.take(user, now) {
			granted[i]++
		}
	}
	return granted, nil
}

// RedisRateLimiter shares the buckets of every worker through token_bucket.lua (Redis server time).
type RedisRateLimiter struct {
	state       *RedisState
	rate, burst float64
}

// NewRedisRateLimiter is a limiter shared in Redis.
func NewRedisRateLimiter(state *RedisState, rate, burst float64) *RedisRateLimiter {
	return &RedisRateLimiter{state: state, rate: rate, burst: burst}
}

func (r *RedisRateLimiter) Rate() float64  { return r.rate }
func (r *RedisRateLimiter) Burst() float64 { return r.burst }

func (r *RedisRateLimiter) Grant(ctx context.Context, users []int64, wanted []int64) ([]int64, error) {
	keys := make([]string, len(users))
	for i, user := range users {
		keys[i] = r.state.Key("bucket", user)
	}
	args := []any{PyFloat(r.rate), PyFloat(r.burst)}
	for _, count := range wanted {
		args = append(args, count)
	}
	return r.state.Run(ctx, "token_bucket", keys, args...)
}
