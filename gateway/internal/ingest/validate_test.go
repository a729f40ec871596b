package ingest

import (
	"math"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"fraudlab/gateway/internal/fraudpb"
)

func TestPyFloatMatchesPythonRepr(t *testing.T) {
	// The right-hand sides are what Python 3.11 prints for repr(x).
	cases := map[float64]string{
		-5: "-5.0", -0.01: "-0.01", 1e16: "1e+16", 1e15: "1000000000000000.0", -1.5e-7: "-1.5e-07",
		0.0001: "0.0001", 0.00001: "1e-05", 123456.789: "123456.789", math.NaN(): "nan", math.Inf(1): "inf",
		math.Inf(-1): "-inf", -1e22: "-1e+22", 2.5e-300: "2.5e-300", math.Copysign(0, -1): "-0.0",
	}
	for value, want := range cases {
		if got := PyFloat(value); got != want {
			t.Errorf("PyFloat(%v) = %q, want %q", value, got, want)
		}
	}
}

func TestPyStrMatchesPythonRepr(t *testing.T) {
	cases := map[string]string{
		"": "''", "REFUND": "'REFUND'", "it's": `"it's"`, `say "hi"`: `'say "hi"'`, `both ' and "`: `'both \' and "'`,
		"tab\there\n": `'tab\there\n'`, "café ☃": "'café ☃'", "\x00\x7f": `'\x00\x7f'`, `back\slash`: `'back\\slash'`,
		"\u200b": `'\u200b'`,
	}
	for text, want := range cases {
		if got := PyStr(text); got != want {
			t.Errorf("PyStr(%q) = %s, want %s", text, got, want)
		}
	}
}

func TestProblemsNameEveryFieldAtFault(t *testing.T) {
	now := int64(1_764_000_000_000)
	valid := &fraudpb.TransactionRequest{TransactionId: "t1", Type: "PAYMENT", Amount: 10, Timestamp: now}
	if problems := Problems(valid, now); problems != nil {
		t.Fatalf("a valid transaction got %v", problems)
	}
	bad := &fraudpb.TransactionRequest{Type: "X", Amount: math.NaN(), Timestamp: now / 1000, IpAddress: "10.0.0"}
	problems := Problems(bad, now)
	if len(problems) != 5 {
		t.Fatalf("want 5 problems, got %v", problems)
	}
	if !strings.Contains(problems[3], "(it looks like seconds)") || !strings.HasPrefix(problems[4], "ip_address='10.0.0'") {
		t.Errorf("unexpected wording: %v", problems)
	}
}

func TestMemoryRateLimiterGrantsTheBurstThenNothing(t *testing.T) {
	limiter := NewMemoryRateLimiter(0.01, 3)
	granted, _ := limiter.Grant(nil, []int64{7, 8}, []int64{5, 1})
	if granted[0] != 3 || granted[1] != 1 {
		t.Fatalf("granted %v, want [3 1]", granted)
	}
	if again, _ := limiter.Grant(nil, []int64{7}, []int64{1}); again[0] != 0 {
		t.Fatalf("an empty bucket granted %v", again)
	}
}

func TestAFullBucketGrantsItsWholeBurstAtOneInstantWhateverTheClock(t *testing.T) {
	for _, rate := range []float64{0.01, 0.03, 0.3, 3, 7, 13, 1000} {
		for _, burst := range []float64{2, 3, 5, 50} {
			for _, now := range []float64{0.5, 981.3836890204183, 734145.9884837436, 9e6 + 0.123} {
				limiter := NewMemoryRateLimiter(rate, burst)
				granted := 0.0
				for limiter.take(1, now) {
					granted++
				}
				if granted != burst {
					t.Fatalf("rate %g, burst %g at %g s: granted %g", rate, burst, now, granted)
				}
			}
		}
	}
}

func TestMemoryDedupClaimsAnIdOnceUntilItsVerdict(t *testing.T) {
	dedup := NewMemoryDedup(60e9, 100)
	first, second := NewDelivery(), NewDelivery()
	if claims, _ := dedup.Claim(nil, []string{"a", "b"}, first); claims[0] != New || claims[1] != New {
		t.Fatalf("first claims %v", claims)
	}
	if claims, _ := dedup.Claim(nil, []string{"a"}, second); claims[0] != Pending {
		t.Fatalf("a claim while in flight is %v, want Pending", claims)
	}
	dedup.Release([]string{"b"}, first, false)
	first.expect(1)
	first.record("a", &kgoRecord, nil)
	if claims, _ := dedup.Claim(nil, []string{"a", "b"}, second); claims[0] != Published || claims[1] != New {
		t.Fatalf("claims after the verdict %v, want [Published New]", claims)
	}
}

var kgoRecord = kgo.Record{Partition: 1, Offset: 5}
