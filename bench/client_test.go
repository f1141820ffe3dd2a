package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneByte reads one byte at a time: SSE events split at every offset.
type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

func TestReadSSEFraming(t *testing.T) {
	stream := ": ping\r\n\r\n" +
		"data: {\"a\":1}\r\n\r\n" +
		"event: x\ndata:{\"b\":2}\n\n" +
		"data: {\"c\":\ndata: 3}\n\n" +
		"id: 7\n\n" +
		"data: [DONE]\n\n" +
		"data: {\"after\":\"done\"}\n\n"
	for _, r := range []io.Reader{strings.NewReader(stream), oneByte{strings.NewReader(stream)}} {
		var got []string
		require.NoError(t, readSSE(r, func(d []byte, _ time.Time) { got = append(got, string(d)) }))
		assert.Equal(t, []string{`{"a":1}`, `{"b":2}`, "{\"c\":\n3}"}, got)
	}
	// An event cut off by the end of the stream is still delivered.
	var got []string
	require.NoError(t, readSSE(strings.NewReader("data: {\"x\":1}"), func(d []byte, _ time.Time) { got = append(got, string(d)) }))
	assert.Equal(t, []string{`{"x":1}`}, got)
	// A line without end is refused rather than buffered without bound.
	err := readSSE(io.MultiReader(strings.NewReader("data: "), strings.NewReader(strings.Repeat("x", maxLine+10))), func([]byte, time.Time) {})
	assert.ErrorContains(t, err, "longer than")
}

func sseServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestDoMeasuresLikeVllmBench(t *testing.T) {
	url := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"model":"sql-lora","choices":[{"index":0,"text":""}]}`+"\n\n")
		io.WriteString(w, `data: {"model":"sql-lora","choices":[{"index":0,"text":" the"}]}`+"\n\n")
		io.WriteString(w, `data: {"model":"sql-lora","choices":[{"index":0,"text":" and","finish_reason":"length"}]}`+"\n\n")
		io.WriteString(w, `data: {"model":"sql-lora","choices":[],"usage":{"prompt_tokens":17,"completion_tokens":2,"total_tokens":19}}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	})
	out := NewClient(1).Do(context.Background(), url+"/v1/completions", []byte(`{}`), nil, 5, time.Now())
	require.True(t, out.Success, out.Error)
	assert.Equal(t, 17, out.PromptLen, "usage.prompt_tokens replaces the dataset's length")
	assert.Equal(t, 2, out.OutputTokens)
	assert.Equal(t, " the and", out.GeneratedText)
	assert.Equal(t, "sql-lora", out.Model)
	assert.Equal(t, 2, out.TextChunks)
	assert.Len(t, out.ITL, 2, "three chunks with choices (the first with empty text counts for TTFT, as in vllm), two gaps")
	assert.InDelta(t, out.Latency, out.TTFT+out.ITL[0]+out.ITL[1], 1e-9, "latency ends at the last token chunk")

	chat := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}`+"\n\n")
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":" yes"}}]}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	})
	out = NewClient(1).Do(context.Background(), chat+"/v1/chat/completions", []byte(`{}`), nil, 5, time.Now())
	require.True(t, out.Success)
	assert.Equal(t, " yes", out.GeneratedText)
	assert.Equal(t, 5, out.PromptLen, "no usage: the dataset's length stays")
	assert.Equal(t, 0, out.OutputTokens)
	assert.Len(t, out.ITL, 1)
}

func TestDoFailures(t *testing.T) {
	var hits atomic.Int32
	url := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/429":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"shed","type":"TooManyRequests","code":429}}`)
		case "/empty":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}`+"\n\ndata: [DONE]\n\n")
		case "/error-event":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"error":{"message":"boom","code":500}}`+"\n\n")
		case "/cut":
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `data: {"choices":[{"text":" a"}]}`+"\n\n")
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"model":"m","choices":[{"text":" a b"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}`)
		}
	})
	c := NewClient(1)
	do := func(path string) Output {
		return c.Do(context.Background(), url+path, []byte(`{}`), nil, 9, time.Now())
	}
	out := do("/429")
	assert.False(t, out.Success)
	assert.Equal(t, 429, out.Status)
	assert.Contains(t, out.Error, "429 Too Many Requests")
	assert.Contains(t, out.Error, "shed")
	assert.Equal(t, int32(1), hits.Load(), "no retry")

	out = do("/empty")
	assert.False(t, out.Success)
	assert.Contains(t, out.Error, "Never received a valid chunk")

	out = do("/error-event")
	assert.False(t, out.Success)
	assert.Contains(t, out.Error, "boom")

	out = do("/cut")
	assert.False(t, out.Success, "a stream cut short is a failure")
	assert.NotEmpty(t, out.Error)

	out = do("/json")
	assert.True(t, out.Success, "a server that ignores stream: one body, TTFT = latency")
	assert.Equal(t, 2, out.OutputTokens)
	assert.Equal(t, out.TTFT, out.Latency)

	out = c.Do(context.Background(), "http://127.0.0.1:1/v1/completions", []byte(`{}`), nil, 9, time.Now())
	assert.False(t, out.Success)
	assert.Equal(t, 0, out.Status)
	assert.NotEmpty(t, out.Error)
}

// A stream is read to its end, past [DONE], as vllm bench does: the
// connection goes back to the pool rather than being closed while the
// server (or a proxy in front of it) is still finishing the response.
func TestDoReadsPastDoneAndReusesTheConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"choices":[{"index":0,"text":" a"}]}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
		w.(http.Flusher).Flush()
		// More than the transport buffers: a client that stops at [DONE]
		// closes the body before its end, and with it the connection.
		io.WriteString(w, strings.Repeat(": trailing comment after [DONE]\n", 8<<10)+"\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := NewClient(1)
	for range 5 {
		out := c.Do(context.Background(), srv.URL+"/v1/completions", []byte(`{}`), nil, 1, time.Now())
		require.True(t, out.Success, out.Error)
		assert.Equal(t, " a", out.GeneratedText)
	}
	assert.Equal(t, int32(1), conns.Load(), "five sequential requests on one kept-alive connection")

	// Bytes after [DONE] that cannot be read fail the request, as the
	// aiohttp reader in vllm bench would.
	cut := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `data: {"choices":[{"text":" a"}]}`+"\n\ndata: [DONE]\n\n")
	})
	out := c.Do(context.Background(), cut+"/v1/completions", []byte(`{}`), nil, 1, time.Now())
	assert.False(t, out.Success)
	assert.Contains(t, out.Error, "unexpected EOF")
}
