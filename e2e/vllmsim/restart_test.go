package vllmsim

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRestartClearsCacheAndEndsRequests restarts an engine with one request
// running and one waiting, in virtual time: both end as restarted, every
// block is free and no prefix is found, AllBlocksCleared is the last event,
// and the engine serves (and caches) again afterwards.
func TestRestartClearsCacheAndEndsRequests(t *testing.T) {
	e, batches := recordingEngine(t, Config{MaxNumSeqs: 1})
	cached := text("cached", 100)
	runVirtual(t, e, []vreq{{adapter: -1, prompt: cached, maxTokens: 1, ignoreEOS: true}})
	require.NotEmpty(t, e.kv.cache)

	running := e.newSeq(-1, text("running", 40), 10, 0, true)
	waiting := e.newSeq(-1, text("waiting", 40), 10, 0, true)
	e.add(running, 0)
	e.add(waiting, 0)
	e.complete(e.schedule(0), 1)
	require.Equal(t, stateRunning, running.state)
	require.Equal(t, stateWaiting, waiting.state, "max_num_seqs 1 keeps it waiting")
	*batches = nil

	e.Restart()
	for _, s := range []*Seq{running, waiting} {
		done, reason := s.Done()
		assert.True(t, done)
		assert.Equal(t, finishRestart, reason)
	}
	assert.False(t, e.hasWork())
	assert.Equal(t, e.kv.n, e.kv.free, "every block is free")
	assert.Empty(t, e.kv.cache)
	require.NotEmpty(t, *batches)
	last := (*batches)[len(*batches)-1].events
	assert.Equal(t, kvEvent{kind: kvAllBlocksCleared}, last[len(last)-1])
	assert.Equal(t, 0, e.kv.lookup(e.newSeq(-1, cached, 1, 0, true)), "nothing is found after a restart")
	assert.Equal(t, uint64(1), e.Stats().Restarts)

	r := runVirtual(t, e, []vreq{{adapter: -1, prompt: cached, maxTokens: 2, ignoreEOS: true}})
	require.Len(t, r.results, 1)
	assert.NotEmpty(t, e.kv.cache, "the restarted engine caches again")
}

// TestRestartDropsConnections checks what a client sees: a stream in flight
// ends without [DONE] (the connection drops, as when a server dies), and
// the next request is answered.
func TestRestartDropsConnections(t *testing.T) {
	f := startFleet(t, Config{Speed: 1})
	resp, err := http.Post(f.URLs()[0]+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"x","max_tokens":5000,"ignore_eos":true,"stream":true}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n') // the first token: the request is running
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "data: {"))

	f.Servers[0].Restart()
	rest, err := io.ReadAll(r)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the stream is cut, not ended")
	assert.NotContains(t, string(rest), "[DONE]")

	code, body := post(t, f.URLs()[0]+"/v1/completions", `{"prompt":"y","max_tokens":2,"ignore_eos":true}`)
	assert.Equal(t, http.StatusOK, code, string(body))
	assert.Equal(t, uint64(1), f.Servers[0].Stats().Restarts)
}
