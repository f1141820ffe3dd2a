package precise

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// olderEngine serves a simulated vLLM without the render endpoints, as
// vLLM's API server answers a route it does not have, and records the
// paths asked.
type olderEngine struct {
	mu    sync.Mutex
	paths []string
	next  http.Handler
}

func (o *olderEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.paths = append(o.paths, r.URL.Path)
	o.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/render") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"detail":"Not Found"}`))
		return
	}
	o.next.ServeHTTP(w, r)
}

func (o *olderEngine) asked() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.paths
	o.paths = nil
	return p
}

// An engine without render endpoints is asked /tokenize, which gives the
// very ids render gives (those the engine hashes), for completions and
// chat bodies alike; the engine is remembered, and asked render again
// after RecheckRender.
func TestTokenizerFallsBackToTokenize(t *testing.T) {
	current := httptest.NewServer(fakeEngine{model: "m"})
	defer current.Close()
	old := &olderEngine{next: fakeEngine{model: "m"}}
	oldSrv := httptest.NewServer(old)
	defer oldSrv.Close()
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

	clock := time.Unix(0, 0)
	tok := NewTokenizer(TokenizerConfig{Timeout: 10 * time.Second, RecheckRender: time.Minute, Now: func() time.Time { return clock }})
	renderer := NewTokenizer(TokenizerConfig{Timeout: 10 * time.Second})
	ctx := context.Background()
	msgs := `[{"role":"system","content":"You answer questions about invoices."},{"role":"user","content":"What is due in March?"}]`
	bodies := []string{
		`{"model":"m","prompt":"The quarterly report says revenue grew by a tenth.","max_tokens":5}`,
		`{"model":"m","messages":` + msgs + `}`,
		`{"model":"m","messages":` + msgs + `,"add_generation_prompt":false,"continue_final_message":true}`,
		`{"model":"m","prompt":["A list of one prompt is one prompt."]}`,
	}
	for i, body := range bodies {
		want, err := renderer.Tokens(ctx, addr(current), []byte(body))
		require.NoError(t, err, body)
		got, err := tok.Tokens(ctx, addr(oldSrv), []byte(body))
		require.NoError(t, err, body)
		assert.Equal(t, want, got, body)
		assert.NotEmpty(t, got)
		if i == 0 {
			assert.Equal(t, []string{"/v1/completions/render", "/tokenize"}, old.asked(), "render first, then /tokenize")
		} else {
			assert.Equal(t, []string{"/tokenize"}, old.asked(), "remembered: no render call")
		}
	}
	assert.Equal(t, TokenizerCounts{Calls: 5, Fallbacks: 4}, tok.Counts())
	assert.Equal(t, TokenizerCounts{Calls: 4}, renderer.Counts(), "the current engine renders")

	// Token ids in the prompt are the ids: no call.
	ids, err := tok.Tokens(ctx, addr(oldSrv), []byte(`{"model":"m","prompt":[[5,6,7]]}`))
	require.NoError(t, err)
	assert.Equal(t, []uint32{5, 6, 7}, ids)
	assert.Empty(t, old.asked())

	// After RecheckRender, render is tried again.
	clock = clock.Add(time.Minute)
	_, err = tok.Tokens(ctx, addr(oldSrv), []byte(`{"model":"m","prompt":"asked again"}`))
	require.NoError(t, err)
	assert.Equal(t, []string{"/v1/completions/render", "/tokenize"}, old.asked())

	// Bodies /tokenize cannot take are errors, counted.
	for _, body := range []string{`{"model":"m","prompt":["one","two"]}`, `{"model":"m"}`, `{"model":"m","prompt":[-1]}`, `not json`} {
		_, err := tok.Tokens(ctx, addr(oldSrv), []byte(body))
		assert.Error(t, err, body)
	}
	assert.Equal(t, uint64(4), tok.Counts().Failures)
}

// A 404 from render that /tokenize answers 404 too (an unknown model) is a
// failure, and does not mark the engine as lacking render.
func TestTokenizerUnknownModelIsNotMissingRender(t *testing.T) {
	srv := httptest.NewServer(fakeEngine{model: "m"})
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	tok := NewTokenizer(TokenizerConfig{Timeout: 10 * time.Second})
	_, err := tok.Tokens(context.Background(), addr, []byte(`{"model":"nope","prompt":"hello"}`))
	require.Error(t, err)
	assert.Equal(t, TokenizerCounts{Calls: 2, Fallbacks: 1, Failures: 1}, tok.Counts())
	_, err = tok.Tokens(context.Background(), addr, []byte(`{"model":"m","prompt":"hello"}`))
	require.NoError(t, err)
	assert.Equal(t, TokenizerCounts{Calls: 3, Fallbacks: 1, Failures: 1}, tok.Counts(), "render asked again, and answered")
}

// The timeout bounds the render call and the fallback together.
func TestTokenizerTimeoutCoversFallback(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/render") {
			http.NotFound(w, r)
			return
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)
	tok := NewTokenizer(TokenizerConfig{Timeout: 50 * time.Millisecond})
	_, err := tok.Tokens(context.Background(), strings.TrimPrefix(srv.URL, "http://"), []byte(`{"model":"m","prompt":"slow"}`))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, TokenizerCounts{Calls: 2, Fallbacks: 1, Failures: 1}, tok.Counts())
}
