package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// failing answers the first n POSTs with 503 (a server still loading its
// model), then passes requests to f.
func failing(t *testing.T, f *fakeServer, n int32) (string, *atomic.Int32) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if posts.Add(1) <= n {
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &posts
}

func warmupConfig(url string) RunConfig {
	reqs, _ := Random(newRNG(1, 1), 3, RandomConfig{InputLen: 5, OutputLen: 4})
	return RunConfig{APIURL: url + "/v1/completions", Model: "m", Requests: reqs, RequestRate: inf, Burstiness: 1,
		RequestIDPrefix: "r-"}
}

func TestReadyCheckRetriesUntilTheServerAnswers(t *testing.T) {
	f := &fakeServer{bodies: map[string]map[string]any{}}
	url, posts := failing(t, f, 2)
	c := warmupConfig(url)
	var w WarmupTotals
	require.NoError(t, ReadyCheck(context.Background(), c, 30*time.Second, time.Millisecond, &w))
	assert.Equal(t, int32(3), posts.Load(), "two refusals, then the answer: no attempt after it")
	assert.Equal(t, WarmupTotals{Sent: 3, Failed: 2, InputTokens: 3, OutputTokens: 4}, w,
		"every attempt counted; tokens from the one the server served")
	b := f.bodies["r-ready-2"]
	require.NotNil(t, b)
	assert.Equal(t, c.Requests[0].Prompt, b["prompt"], "the run's first request")
	assert.NotContains(t, b, "ignore_eos", "sent as the run sends it: here without ignore_eos")
}

func TestReadyCheckGivesUp(t *testing.T) {
	f := &fakeServer{bodies: map[string]map[string]any{}}
	url, _ := failing(t, f, 1<<30)
	var w WarmupTotals
	err := ReadyCheck(context.Background(), warmupConfig(url), 500*time.Millisecond, 20*time.Millisecond, &w)
	require.ErrorContains(t, err, "503")
	assert.Positive(t, w.Sent)
	assert.Equal(t, w.Sent, w.Failed)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.ErrorIs(t, ReadyCheck(ctx, warmupConfig(url), time.Minute, time.Minute, &w), context.Canceled)
}

func TestWarmupSendsTheFirstRequestWithinTheConcurrencyCap(t *testing.T) {
	f, url := newFake(t)
	f.gate = make(chan struct{})
	var once sync.Once
	// Opens once two are in flight: a cap below 2 never finishes (the
	// context ends the test), no cap lets more than 2 in.
	f.onArrive = func(n int32) {
		if n == 2 {
			once.Do(func() { close(f.gate) })
		}
	}
	c := warmupConfig(url)
	c.MaxConcurrency = 2
	c.IgnoreEOS = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var w WarmupTotals
	require.NoError(t, Warmup(ctx, c, 5, &w))
	assert.Equal(t, int32(2), f.peak.Load())
	assert.Equal(t, WarmupTotals{Sent: 5, InputTokens: 15, OutputTokens: 20}, w)
	for _, id := range []string{"r-warmup-0", "r-warmup-4"} {
		require.Contains(t, f.bodies, id)
		assert.Equal(t, c.Requests[0].Prompt, f.bodies[id]["prompt"])
		assert.Equal(t, true, f.bodies[id]["ignore_eos"])
	}
}

func TestWriteExtras(t *testing.T) {
	var b bytes.Buffer
	WriteExtras(&b, ExtraInfo{ServedModels: Object{{"a", 2}}})
	assert.Empty(t, b.String(), "nothing to show, no block")
	WriteExtras(&b, ExtraInfo{ServedModels: Object{{"a", 2}, {"b", 1}}, ShowModels: true,
		Warmups: WarmupTotals{Sent: 3, Failed: 1, InputTokens: 20, OutputTokens: 8}})
	assert.Equal(t, "================= meshllm extras =================\n"+
		"Served models (response \"model\"):        a=2 b=1   \n"+
		"Warm-up requests (not in the totals):    3         \n"+
		"Warm-up requests failed:                 1         \n"+
		"Warm-up input tokens:                    20        \n"+
		"Warm-up generated tokens:                8         \n"+
		"==================================================\n", b.String())
}
