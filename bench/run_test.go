package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeServer streams n tokens " t<id>" per request (n = max tokens) and
// keeps every request body.
type fakeServer struct {
	mu       sync.Mutex
	bodies   map[string]map[string]any // by x-request-id
	inflight atomic.Int32
	peak     atomic.Int32
	// gate, when set, holds each request until it is closed.
	gate chan struct{}
	// onArrive is called with the number in flight when a request arrives.
	onArrive func(inflight int32)
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.inflight.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if f.onArrive != nil {
		f.onArrive(n)
	}
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &body)
	id := r.Header.Get("x-request-id")
	f.mu.Lock()
	f.bodies[id] = body
	f.mu.Unlock()
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-r.Context().Done():
			f.inflight.Add(-1)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	maxTok, _ := body["max_tokens"].(float64)
	if _, chat := body["messages"]; chat {
		maxTok, _ = body["max_completion_tokens"].(float64)
	}
	tok := strings.ReplaceAll(" t"+id, "-", "")
	for range int(maxTok) {
		fmt.Fprintf(w, "data: {\"model\":%q,\"choices\":[{\"text\":%q,\"delta\":{\"content\":%q}}]}\n\n", body["model"], tok, tok)
	}
	fmt.Fprintf(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":%d}}\n\n", int(maxTok))
	// Leave the count before the last bytes: the client cannot have
	// finished (and sent its next request) before this.
	f.inflight.Add(-1)
	io.WriteString(w, "data: [DONE]\n\n")
}

func newFake(t *testing.T) (*fakeServer, string) {
	f := &fakeServer{bodies: map[string]map[string]any{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func TestRunHoldsMaxConcurrency(t *testing.T) {
	f, url := newFake(t)
	f.gate = make(chan struct{})
	var once sync.Once
	// The gate opens only once 4 requests are in flight at the same time:
	// a runner that allowed fewer would never finish (the context below
	// ends the test instead).
	f.onArrive = func(n int32) {
		if n == 4 {
			once.Do(func() { close(f.gate) })
		}
	}
	reqs, _ := Random(newRNG(1, 1), 30, RandomConfig{InputLen: 5, OutputLen: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, RunConfig{APIURL: url + "/v1/completions", Model: "m", Requests: reqs,
		RequestRate: inf, Burstiness: 1, MaxConcurrency: 4, RequestIDPrefix: "r-"})
	require.NoError(t, err)
	assert.Equal(t, int32(4), f.peak.Load(), "never more than --max-concurrency in flight")
	for _, o := range res.Outputs {
		require.True(t, o.Success, o.Error)
	}
	m := Calculate(res.Outputs, res.Duration, MetricsOptions{})
	assert.LessOrEqual(t, m.MaxConcurrentRequests, 4)
}

var inf = math.Inf(1)

func TestRunSendsVllmBenchRequests(t *testing.T) {
	f, url := newFake(t)
	reqs, _ := Random(newRNG(1, 1), 6, RandomConfig{InputLen: 5, OutputLen: 2})
	mods, _ := ParseLoRAModules([]string{"a", "b"})
	require.NoError(t, AssignLoRA(nil, reqs[:4], mods, true))
	h := http.Header{}
	h.Set("x-extra", "1")
	res, err := Run(context.Background(), RunConfig{APIURL: url + "/v1/completions", Model: "base", Requests: reqs,
		RequestRate: inf, Burstiness: 1, IgnoreEOS: true, RequestIDPrefix: "bench-x-", Header: h,
		ExtraBody: map[string]any{"temperature": 0.0}})
	require.NoError(t, err)
	wantModel := []string{"a", "b", "a", "b", "base", "base"}
	for i, r := range reqs {
		b := f.bodies[fmt.Sprintf("bench-x-%d", i)]
		require.NotNil(t, b, "x-request-id is the prefix and the request's index")
		assert.Equal(t, r.Prompt, b["prompt"])
		assert.Equal(t, float64(r.OutputLen), b["max_tokens"])
		assert.Equal(t, true, b["stream"])
		assert.Equal(t, map[string]any{"include_usage": true}, b["stream_options"])
		assert.Equal(t, true, b["ignore_eos"])
		assert.Equal(t, 0.0, b["temperature"])
		assert.Equal(t, wantModel[i], b["model"])
		assert.Equal(t, wantModel[i], res.Outputs[i].Model)
		assert.Equal(t, r.OutputLen, res.Outputs[i].OutputTokens)
	}
}

func TestRunMultiTurnSendsHistory(t *testing.T) {
	f, url := newFake(t)
	reqs, err := MultiTurn(newRNG(1, 1), 6, MultiTurnConfig{Turns: 3, SystemPromptLen: 4, UserLen: 3, OutputLen: 2})
	require.NoError(t, err)
	res, err := Run(context.Background(), RunConfig{APIURL: url + "/v1/chat/completions", Chat: true, Model: "m",
		Requests: reqs, RequestRate: inf, Burstiness: 1, MaxConcurrency: 2, RequestIDPrefix: "c-"})
	require.NoError(t, err)
	// Conversation 0 is requests 0, 2, 4: each sends all before it.
	msgs := func(i int) []any { return f.bodies[fmt.Sprintf("c-%d", i)]["messages"].([]any) }
	require.Len(t, msgs(0), 2) // system + user
	require.Len(t, msgs(2), 4) // + answer + user
	require.Len(t, msgs(4), 6)
	answer := msgs(4)[2].(map[string]any)
	assert.Equal(t, "assistant", answer["role"])
	assert.Equal(t, " tc0 tc0", answer["content"], "the server's first answer is sent back")
	assert.Equal(t, res.Outputs[0].GeneratedText, answer["content"])
	assert.Equal(t, " tc2 tc2", msgs(4)[4].(map[string]any)["content"])
	assert.Equal(t, reqs[4].Messages[0].Content, msgs(4)[5].(map[string]any)["content"])
	assert.Equal(t, float64(2), f.bodies["c-4"]["max_completion_tokens"])
	assert.Len(t, res.Sent[4], 6)
	for _, o := range res.Outputs {
		assert.GreaterOrEqual(t, o.ClientQueueTime, 0.0)
	}
	// A multi-turn dataset cannot go to /v1/completions.
	_, err = Run(context.Background(), RunConfig{APIURL: url + "/v1/completions", Model: "m", Requests: reqs, RequestRate: inf, Burstiness: 1})
	assert.ErrorContains(t, err, "chat endpoint")
}

func TestRunNeverSendsBeforeArrival(t *testing.T) {
	_, url := newFake(t)
	const n, rate = 25, 500.0
	reqs, _ := Random(newRNG(1, 1), n, RandomConfig{InputLen: 2, OutputLen: 1})
	res, err := Run(context.Background(), RunConfig{APIURL: url + "/v1/completions", Model: "m", Requests: reqs,
		RequestRate: rate, Burstiness: 0.5, Seed: 9})
	require.NoError(t, err)
	offsets, _ := ArrivalOffsets(newRNG(9, streamArrivals), n, rate, 0.5)
	for i, o := range res.Outputs {
		require.True(t, o.Success)
		assert.GreaterOrEqual(t, o.StartTime, offsets[i], "request %d sent early", i)
	}
	assert.GreaterOrEqual(t, res.Duration, offsets[n-1])
}

func TestRunStopsWithContext(t *testing.T) {
	f, url := newFake(t)
	f.gate = make(chan struct{}) // never opens
	ctx, cancel := context.WithCancel(context.Background())
	f.onArrive = func(int32) { cancel() }
	reqs, _ := Random(newRNG(1, 1), 5, RandomConfig{InputLen: 2, OutputLen: 1})
	res, err := Run(ctx, RunConfig{APIURL: url + "/v1/completions", Model: "m", Requests: reqs,
		RequestRate: inf, Burstiness: 1, MaxConcurrency: 1})
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, res)
	assert.False(t, res.Outputs[0].Success)
	for _, o := range res.Outputs[1:] {
		assert.Contains(t, o.Error, "not sent")
	}
}

func TestRunURLForSendsEachRequestWhereAsked(t *testing.T) {
	main, mainURL := newFake(t)
	other, otherURL := newFake(t)
	reqs, _ := Random(newRNG(1, 1), 10, RandomConfig{InputLen: 5, OutputLen: 1})
	res, err := Run(context.Background(), RunConfig{APIURL: mainURL + "/v1/completions", Model: "m", Requests: reqs,
		RequestRate: inf, Burstiness: 1, RequestIDPrefix: "r-",
		URLFor: func(i int) string {
			if i%3 == 0 {
				return otherURL + "/v1/completions"
			}
			return mainURL + "/v1/completions"
		}})
	require.NoError(t, err)
	for i, o := range res.Outputs {
		require.True(t, o.Success, o.Error)
		id := fmt.Sprintf("r-%d", i)
		assert.Equal(t, i%3 == 0, other.bodies[id] != nil, "request %d", i)
		assert.Equal(t, i%3 != 0, main.bodies[id] != nil, "request %d", i)
	}
}
