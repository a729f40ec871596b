package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ScriptNames are the Lua scripts of fraudlab/ingest/lua, run as they are by both implementations.
var ScriptNames = []string{"dedup_claim", "dedup_settle", "token_bucket"}

// RedisState is the shared Redis as one worker sees it: the scripts, this worker's owner id and lease, and whether
// Redis answers (fraudlab/ingest/redis_state.py, key for key).
type RedisState struct {
	URL            string
	Prefix         string
	Lease          time.Duration
	Owner          string
	client         *redis.Client
	scripts        map[string]*redis.Script
	available      atomic.Bool
	closed         atomic.Bool
	onAvailability func(bool)
	stop           chan struct{}
	beating        sync.WaitGroup
}

// Redacted is a URL without its password, for messages and logs.
func Redacted(url string) string {
	scheme, rest, found := strings.Cut(url, "://")
	if !found {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	credentials, location := rest[:at], rest[at+1:]
	user, _, hasPassword := strings.Cut(credentials, ":")
	if !hasPassword {
		return url
	}
	return fmt.Sprintf("%s://%s:***@%s", scheme, user, location)
}

// LoadScripts reads the Lua scripts from dir (fraudlab/ingest/lua).
func LoadScripts(dir string) (map[string]*redis.Script, error) {
	scripts := map[string]*redis.Script{}
	for _, name := range ScriptNames {
		text, err := os.ReadFile(filepath.Join(dir, name+".lua"))
		if err != nil {
			return nil, fmt.Errorf("the Lua scripts of fraudlab/ingest/lua are needed (--lua-dir %s): %w", dir, err)
		}
		scripts[name] = redis.NewScript(string(text))
	}
	return scripts, nil
}

func newOwner() string {
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}

// OpenRedis connects, takes the lease and starts the heartbeat; a failure is a configuration error.
func OpenRedis(url, prefix string, lease, timeout time.Duration, scripts map[string]*redis.Script,
	onAvailability func(bool)) (*RedisState, error) {
	s := &RedisState{URL: url, Prefix: prefix, Lease: lease, Owner: newOwner(), scripts: scripts,
		onAvailability: onAvailability, stop: make(chan struct{})}
	s.available.Store(true)
	options, err := redis.ParseURL(url)
	if err == nil {
		options.DialTimeout, options.ReadTimeout, options.WriteTimeout = timeout, timeout, timeout
		options.MaxRetries = 1
		options.Protocol = 2
		options.DisableIdentity = true
		s.client = redis.NewClient(options)
		err = s.renew(context.Background())
	}
	if err != nil {
		if s.client != nil {
			_ = s.client.Close()
		}
		return nil, fmt.Errorf("Redis at %s cannot be used (%s): start it (`fraudlab redis up`), or fix --redis / "+
			"REDIS_URL (host, port, password).", Redacted(url), strings.ReplaceAll(err.Error(), url, Redacted(url)))
	}
	s.beating.Add(1)
	go s.beat()
	return s, nil
}

// LeasePrefix is the key prefix of the workers' leases.
func (s *RedisState) LeasePrefix() string { return s.Prefix + ":owner:" }

// Key is <prefix>:<kind>:<name>, the layout the scripts and the Python workers use.
func (s *RedisState) Key(kind string, name any) string {
	return fmt.Sprintf("%s:%s:%v", s.Prefix, kind, name)
}

// Closed tells whether the state was closed (the server is stopping).
func (s *RedisState) Closed() bool { return s.closed.Load() }

// Run runs one script (EVALSHA, loading it again after a Redis restart): one round trip. It returns the script's
// codes, one per key (dedup_settle's count is returned as a single code).
func (s *RedisState) Run(ctx context.Context, name string, keys []string, args ...any) ([]int64, error) {
	if s.closed.Load() {
		return nil, &UnavailableError{fmt.Sprintf("Redis at %s is not connected (the server is stopping)", Redacted(s.URL))}
	}
	result, err := s.scripts[name].Run(ctx, s.client, keys, args...).Result()
	if err != nil {
		var redisError redis.Error
		if !errors.As(err, &redisError) {
			s.setAvailable(false, fmt.Sprintf("%s: %v", name, err))
		}
		return nil, &UnavailableError{fmt.Sprintf("Redis at %s did not answer (%v); nothing was acknowledged, resend later",
			Redacted(s.URL), err)}
	}
	switch value := result.(type) {
	case int64:
		return []int64{value}, nil
	case []any:
		codes := make([]int64, len(value))
		for i, code := range value {
			number, ok := code.(int64)
			if !ok {
				return nil, fmt.Errorf("script %s answered %v, not integers", name, value)
			}
			codes[i] = number
		}
		return codes, nil
	}
	return nil, fmt.Errorf("script %s answered %v, not integers", name, result)
}

func (s *RedisState) renew(ctx context.Context) error {
	return s.client.Set(ctx, s.Key("owner", s.Owner), "1", s.Lease).Err()
}

// beat renews the lease three times per lease period and reports Redis's availability as it changes.
func (s *RedisState) beat() {
	defer s.beating.Done()
	everyTick(s.Lease/3, s.stop, func() {
		if err := s.renew(context.Background()); err != nil {
			s.setAvailable(false, fmt.Sprintf("heartbeat: %v", err))
		} else {
			s.setAvailable(true, "")
		}
	})
}

// setAvailable records a change of Redis's availability, logged with its reason (the failed call) when it is lost.
func (s *RedisState) setAvailable(available bool, reason string) {
	if s.available.Swap(available) == available {
		return
	}
	state := "reachable"
	if !available {
		state = "unreachable (" + reason + ")"
	}
	log.Printf("Redis at %s became %s", Redacted(s.URL), state)
	s.onAvailability(available)
}

// Close stops the heartbeat and drops the lease, so waiting workers take over at once (best effort).
func (s *RedisState) Close() {
	close(s.stop)
	s.beating.Wait()
	s.closed.Store(true)
	_ = s.client.Del(context.Background(), s.Key("owner", s.Owner)).Err()
	_ = s.client.Close()
}
