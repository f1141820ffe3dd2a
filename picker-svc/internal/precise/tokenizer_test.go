package precise

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenizer(t *testing.T) {
	var paths []string
	var calls atomic.Int32
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		paths = append(paths, r.URL.Path)
		switch {
		case strings.Contains(string(body), "slow"):
			<-block
		case strings.Contains(string(body), "broken"):
			http.Error(w, `{"error":"no"}`, http.StatusBadRequest)
		case strings.Contains(string(body), "garbage"):
			_, _ = w.Write([]byte(`[{"token_ids":"x"}]`))
		case strings.Contains(string(body), "two"):
			_, _ = w.Write([]byte(`[{"token_ids":[1]},{"token_ids":[2]}]`))
		case r.URL.Path == "/v1/chat/completions/render":
			_, _ = w.Write([]byte(`{"request_id":"c","token_ids":[7,8,9]}`))
		default:
			_, _ = w.Write([]byte(`[{"request_id":"c","token_ids":[1,2,3]}]`))
		}
	}))
	defer srv.Close()
	defer close(block)
	addr := strings.TrimPrefix(srv.URL, "http://")
	tok := NewTokenizer(TokenizerConfig{Timeout: 10 * time.Second, CacheEntries: 2})

	ids, err := tok.Tokens(context.Background(), addr, []byte(`{"model":"m","prompt":"hello"}`))
	require.NoError(t, err)
	assert.Equal(t, []uint32{1, 2, 3}, ids)
	ids, err = tok.Tokens(context.Background(), addr, []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	assert.Equal(t, []uint32{7, 8, 9}, ids)
	assert.Equal(t, []string{"/v1/completions/render", "/v1/chat/completions/render"}, paths)

	// Cached: no call.
	_, err = tok.Tokens(context.Background(), addr, []byte(`{"model":"m","prompt":"hello"}`))
	require.NoError(t, err)
	assert.Equal(t, int32(2), calls.Load())

	for _, body := range []string{`{"prompt":"broken"}`, `{"prompt":"garbage"}`, `{"prompt":"two"}`} {
		_, err := tok.Tokens(context.Background(), addr, []byte(body))
		assert.Error(t, err, body)
	}
	assert.Equal(t, TokenizerCounts{Hits: 1, Calls: 5, Failures: 3}, tok.Counts())

	// An engine that does not answer in time: an error, counted.
	quick := NewTokenizer(TokenizerConfig{Timeout: 20 * time.Millisecond})
	_, err = quick.Tokens(context.Background(), addr, []byte(`{"prompt":"slow"}`))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, TokenizerCounts{Calls: 1, Failures: 1}, quick.Counts())

	// Unreachable engine: an error, counted.
	_, err = tok.Tokens(context.Background(), "127.0.0.1:1", []byte(`{"prompt":"other"}`))
	assert.Error(t, err)
	assert.Equal(t, uint64(4), tok.Counts().Failures)
}
