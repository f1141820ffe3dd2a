package precise

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/tidwall/gjson"
)

// Tokenizer gets a request's prompt token ids from an engine's render
// endpoint (vLLM's /v1/completions/render and /v1/chat/completions/render:
// the request body in, the request as the engine will run it out, token
// ids included), so they are exactly the ids the engine hashes into its KV
// blocks. An engine that serves neither (older vLLM) is asked its
// /tokenize instead, and remembered as such for a while. Answers are kept
// in a bounded LRU keyed by a hash of the body.
type Tokenizer struct {
	client  *http.Client
	timeout time.Duration
	maxIDs  int
	cache   *lru.Cache[uint64, []uint32]
	seed    maphash.Seed
	// noRender: engines (by address) whose render endpoints were not
	// there when last asked, and when that was.
	noRender *lru.Cache[string, time.Time]
	now      func() time.Time
	recheck  time.Duration

	hits, calls, fallbacks, failures atomic.Uint64
}

// TokenizerConfig tunes a Tokenizer. Zero fields take their defaults.
type TokenizerConfig struct {
	// Timeout bounds one Tokens call, a fallback included (default 200ms).
	Timeout time.Duration
	// CacheEntries bounds the cache (default 4096 prompts).
	CacheEntries int
	// MaxTokens refuses longer answers (default 1<<20 ids).
	MaxTokens int
	// RecheckRender is how long an engine without render endpoints is
	// asked /tokenize before render is tried again, in case it was
	// upgraded (default 5m).
	RecheckRender time.Duration
	// Client makes the calls (default: a client of its own).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// noRenderEntries bounds how many engines without render endpoints are
// remembered; one forgotten is asked render again, which costs one call.
const noRenderEntries = 4096

// NewTokenizer returns a Tokenizer.
func NewTokenizer(cfg TokenizerConfig) *Tokenizer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.CacheEntries <= 0 {
		cfg.CacheEntries = 4096
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 1 << 20
	}
	if cfg.RecheckRender <= 0 {
		cfg.RecheckRender = 5 * time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c, _ := lru.New[uint64, []uint32](cfg.CacheEntries) // size > 0: no error
	nr, _ := lru.New[string, time.Time](noRenderEntries)
	return &Tokenizer{client: cfg.Client, timeout: cfg.Timeout, maxIDs: cfg.MaxTokens, cache: c, seed: maphash.MakeSeed(),
		noRender: nr, now: cfg.Now, recheck: cfg.RecheckRender}
}

// TokenizerCounts are a Tokenizer's outcomes so far.
type TokenizerCounts struct {
	// Hits: answered from the cache. Calls: HTTP calls to an engine, of
	// which Fallbacks went to /tokenize. Failures: prompts left without
	// token ids (an error, a timeout, an answer that did not read).
	Hits, Calls, Fallbacks, Failures uint64
}

// Counts reports the outcomes so far.
func (t *Tokenizer) Counts() TokenizerCounts {
	return TokenizerCounts{Hits: t.hits.Load(), Calls: t.calls.Load(), Fallbacks: t.fallbacks.Load(), Failures: t.failures.Load()}
}

// renderPath is the render endpoint for an OpenAI request body: chat when
// it has messages. gjson skims the body without decoding it, which keeps a
// cache hit cheap for a long prompt.
func renderPath(body []byte) string {
	if m := gjson.GetBytes(body, "messages"); m.Exists() && m.Type != gjson.Null {
		return "/v1/chat/completions/render"
	}
	return "/v1/completions/render"
}

// errNotServed: the engine does not serve the endpoint asked.
var errNotServed = errors.New("endpoint not served")

// Tokens returns body's prompt token ids, rendered by the engine at addr
// (host:port), from the cache when it has them, within the timeout.
func (t *Tokenizer) Tokens(ctx context.Context, addr string, body []byte) ([]uint32, error) {
	path := renderPath(body)
	var h maphash.Hash
	h.SetSeed(t.seed)
	h.WriteString(path)
	h.Write(body)
	key := h.Sum64()
	if ids, ok := t.cache.Get(key); ok {
		t.hits.Add(1)
		return ids, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	ids, err := t.ask(ctx, addr, path, body)
	if err != nil {
		t.failures.Add(1)
		return nil, err
	}
	t.cache.Add(key, ids)
	return ids, nil
}

// ask tries render, unless the engine is known not to serve it, then
// /tokenize.
func (t *Tokenizer) ask(ctx context.Context, addr, path string, body []byte) ([]uint32, error) {
	if since, ok := t.noRender.Get(addr); !ok || t.now().Sub(since) >= t.recheck {
		ids, err := t.render(ctx, "http://"+addr+path, body)
		if !errors.Is(err, errNotServed) {
			return ids, err
		}
	}
	req, ids, err := tokenizeRequest(body)
	if err != nil || ids != nil {
		return ids, err
	}
	t.fallbacks.Add(1)
	ids, err = t.tokenize(ctx, "http://"+addr+"/tokenize", req)
	if err == nil {
		// Only now: a 404 from render can also mean an unknown model.
		t.noRender.Add(addr, t.now())
	}
	return ids, err
}

// post sends body to url and returns the answer's bytes, bounded by the
// largest answer maxIDs allows. 404 and 405 are errNotServed.
func (t *Tokenizer) post(ctx context.Context, url string, body []byte) ([]byte, error) {
	t.calls.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	// A token id is at most 11 bytes of JSON; the rest of the answer is small.
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(t.maxIDs)*11+64<<10))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return bytes.TrimSpace(b), nil
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return nil, fmt.Errorf("%s: status %d: %.200s: %w", url, resp.StatusCode, b, errNotServed)
	default:
		return nil, fmt.Errorf("%s: status %d: %.200s", url, resp.StatusCode, b)
	}
}

// tokenizeAnswer is vLLM's TokenizeResponse.
type tokenizeAnswer struct {
	Count  int       `json:"count"`
	Tokens *[]uint32 `json:"tokens"`
}

func (t *Tokenizer) tokenize(ctx context.Context, url string, body []byte) ([]uint32, error) {
	b, err := t.post(ctx, url, body)
	if err != nil {
		return nil, err
	}
	var ans tokenizeAnswer
	switch err := json.Unmarshal(b, &ans); {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", url, err)
	case ans.Tokens == nil:
		return nil, errors.New(url + ": no tokens")
	case len(*ans.Tokens) > t.maxIDs:
		return nil, fmt.Errorf("%s: %d token ids, more than %d", url, len(*ans.Tokens), t.maxIDs)
	case len(*ans.Tokens) == 0:
		return nil, errors.New(url + ": no token ids")
	}
	return *ans.Tokens, nil
}

// renderAnswer is what both render endpoints answer with, one object
// (chat) or a list of one per prompt (completions).
type renderAnswer struct {
	TokenIDs []uint32 `json:"token_ids"`
}

func (t *Tokenizer) render(ctx context.Context, url string, body []byte) ([]uint32, error) {
	b, err := t.post(ctx, url, body)
	if err != nil {
		return nil, err
	}
	var ans []renderAnswer
	if len(b) > 0 && b[0] == '[' {
		err = json.Unmarshal(b, &ans)
	} else {
		ans = make([]renderAnswer, 1)
		err = json.Unmarshal(b, &ans[0])
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("render %s: %w", url, err)
	case len(ans) != 1:
		return nil, fmt.Errorf("render %s: %d prompts, want one", url, len(ans))
	case len(ans[0].TokenIDs) == 0:
		return nil, errors.New("render " + url + ": no token_ids")
	case len(ans[0].TokenIDs) > t.maxIDs:
		return nil, fmt.Errorf("render %s: %d token ids, more than %d", url, len(ans[0].TokenIDs), t.maxIDs)
	}
	return ans[0].TokenIDs, nil
}
