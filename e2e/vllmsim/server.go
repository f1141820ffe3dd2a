package vllmsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBodyBytes bounds a request body (a max_model_len prompt is ~32 KiB of
// text here; JSON escaping and token-id lists make it larger).
const maxBodyBytes = 8 << 20

// Server is one simulated vLLM server: an Engine plus its OpenAI-compatible
// HTTP API and /metrics.
type Server struct {
	cfg     Config
	eng     *Engine
	mux     *http.ServeMux
	models  map[string]int
	created int64
	idBase  uint64 // random per server, so response ids differ across servers and runs
	nextID  atomic.Uint64

	mu     sync.Mutex
	kvPub  *kvPublisher // nil unless KV events are on and the server started
	ln     net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// handlers counts generate calls in flight, so Close returns only
	// after they did.
	handlers sync.WaitGroup
	stopping bool
}

// NewServer validates cfg and builds a server; Start makes it listen.
func NewServer(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, eng: newEngine(cfg), mux: http.NewServeMux(), created: time.Now().Unix(), idBase: rand.Uint64()}
	s.models = map[string]int{cfg.Model: -1}
	for i, m := range cfg.LoRAModules {
		s.models[m.Name] = i
	}
	s.mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) { s.generate(w, r, false) })
	s.mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) { s.generate(w, r, true) })
	s.mux.HandleFunc("GET /v1/models", s.listModels)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	s.mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write(s.eng.writeMetrics())
	})
	s.mux.HandleFunc("POST /tokenize", s.tokenizeHandler)
	s.mux.HandleFunc("POST /detokenize", s.detokenizeHandler)
	s.mux.HandleFunc("POST /v1/completions/render", func(w http.ResponseWriter, r *http.Request) { s.renderHandler(w, r, false) })
	s.mux.HandleFunc("POST /v1/chat/completions/render", func(w http.ResponseWriter, r *http.Request) { s.renderHandler(w, r, true) })
	s.mux.HandleFunc("POST /reset_prefix_cache", func(w http.ResponseWriter, r *http.Request) {
		s.eng.ResetPrefixCache() // vLLM answers 200 whether or not blocks in use kept it from resetting
		w.WriteHeader(http.StatusOK)
	})
	s.mux.HandleFunc("POST /sim/kv-events/drop", s.dropKVEventsHandler)
	s.mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.eng.Stats())
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, &apiError{status: 404, message: "Not Found: " + r.URL.Path})
	})
	return s, nil
}

// Config is the server's configuration with defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Engine is the server's engine.
func (s *Server) Engine() *Engine { return s.eng }

// Handler serves the API. To serve it on a listener of your own instead of
// Start, also run Engine().Run(ctx): requests wait for the engine.
func (s *Server) Handler() http.Handler { return s.mux }

// Stats is the engine's counters snapshot.
func (s *Server) Stats() Stats { return s.eng.Stats() }

// Addr is the listen address once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is http://Addr.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Start listens on cfg.Addr and runs the engine and HTTP server until ctx is
// done or Close is called.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("vllm-sim %s: %w", s.cfg.Model, err)
	}
	var pub *kvPublisher
	if s.cfg.KVEvents.enabled() {
		pub, err = newKVPublisher(s.cfg.KVEvents, s.cfg.BlockSize, s.cfg.LoRAModules, s.cfg.Logger)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("vllm-sim %s: %w", s.cfg.Model, err)
		}
		s.eng.mu.Lock()
		s.eng.kv.recording, s.eng.kvOut = true, pub.publish
		s.eng.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	srv := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.ln, s.srv, s.cancel, s.kvPub = ln, srv, cancel, pub
	s.mu.Unlock()
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.eng.Run(ctx) }()
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("vllm-sim serve", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		// The engine stops on the same ctx, so nothing in flight can finish:
		// close connections at once (a graceful Shutdown would also wait
		// for idle new connections) and wait for the handlers to return.
		s.mu.Lock()
		s.stopping = true // no handler starts after this, so Wait is safe
		s.mu.Unlock()
		_ = srv.Close()
		s.handlers.Wait()
		if pub != nil {
			pub.close() // after the engine: it may be waiting to queue a batch until then
		}
	}()
	return nil
}

// Close stops the server and its engine and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body(s.cfg.LegacyErrors))
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	type permission struct {
		ID                 string  `json:"id"`
		Object             string  `json:"object"`
		Created            int64   `json:"created"`
		AllowCreateEngine  bool    `json:"allow_create_engine"`
		AllowSampling      bool    `json:"allow_sampling"`
		AllowLogprobs      bool    `json:"allow_logprobs"`
		AllowSearchIndices bool    `json:"allow_search_indices"`
		AllowView          bool    `json:"allow_view"`
		AllowFineTuning    bool    `json:"allow_fine_tuning"`
		Organization       string  `json:"organization"`
		Group              *string `json:"group"`
		IsBlocking         bool    `json:"is_blocking"`
	}
	type model struct {
		ID          string       `json:"id"`
		Object      string       `json:"object"`
		Created     int64        `json:"created"`
		OwnedBy     string       `json:"owned_by"`
		Root        string       `json:"root"`
		Parent      *string      `json:"parent"`
		MaxModelLen *int         `json:"max_model_len,omitempty"`
		Permission  []permission `json:"permission"`
	}
	perm := func(i int) []permission {
		return []permission{{ID: fmt.Sprintf("modelperm-sim%d", i), Object: "model_permission", Created: s.created,
			AllowSampling: true, AllowLogprobs: true, AllowView: true, Organization: "*"}}
	}
	base := s.cfg.Model
	data := []model{{ID: base, Object: "model", Created: s.created, OwnedBy: "vllm", Root: base,
		MaxModelLen: &s.cfg.MaxModelLen, Permission: perm(0)}}
	for i, m := range s.cfg.LoRAModules {
		data = append(data, model{ID: m.Name, Object: "model", Created: s.created, OwnedBy: "vllm", Root: m.Path,
			Parent: &base, Permission: perm(i + 1)})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
}

// generate serves both completion endpoints.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, chat bool) {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		s.writeError(w, &apiError{status: 503, message: "server is shutting down"})
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		s.writeError(w, errBadRequest("could not read request body: %v", err))
		return
	}
	req, aerr := decodeRequest(body, chat, s.models, s.cfg.Model)
	if aerr != nil {
		s.writeError(w, aerr)
		return
	}
	notify := make(chan struct{}, 1)
	seqs := make([]*Seq, len(req.prompts))
	for i, p := range req.prompts {
		maxTok, aerr := s.maxTokens(req, p)
		if aerr != nil {
			s.writeError(w, aerr)
			return
		}
		seqs[i] = s.eng.newSeq(req.adapter, p, maxTok, req.minTokens, req.ignoreEOS)
		seqs[i].notify = notify
	}
	for _, q := range seqs {
		s.eng.Submit(q)
	}
	id := s.nextID.Add(1)
	rs := &responder{srv: s, req: req, seqs: seqs, created: time.Now().Unix()}
	if chat {
		rs.id = fmt.Sprintf("chatcmpl-%016x%016x", s.idBase, id)
	} else {
		rs.id = fmt.Sprintf("cmpl-%016x%016x", s.idBase, id)
	}
	if req.stream {
		rs.stream(w, r.Context(), notify)
	} else {
		rs.whole(w, r.Context(), notify)
	}
}

// maxTokens is a prompt's output cap: max_tokens, or by default the rest of
// the context, as vLLM's; an error when the prompt and cap exceed the context.
func (s *Server) maxTokens(req *request, prompt []byte) (int, *apiError) {
	pt := max(countTokens(len(prompt)), 1)
	maxTok := req.maxTokens
	if maxTok == 0 {
		maxTok = s.cfg.MaxModelLen - pt // vLLM's default: fill the context
	}
	if pt+maxTok > s.cfg.MaxModelLen || maxTok < 1 {
		return 0, &apiError{status: 400, message: fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			s.cfg.MaxModelLen, pt+maxTok, pt, maxTok)}
	}
	if req.minTokens > maxTok {
		return 0, &apiError{status: 400, message: fmt.Sprintf("min_tokens must be less than or equal to max_tokens=%d, got %d.", maxTok, req.minTokens), param: "min_tokens"}
	}
	return maxTok, nil
}

// responder writes one request's response as its sequences progress.
type responder struct {
	srv     *Server
	req     *request
	seqs    []*Seq
	id      string
	created int64
}

// wait blocks until the engine publishes progress; false means the client
// or the engine went away (the sequences are then aborted).
func (rs *responder) wait(ctx context.Context, notify chan struct{}) bool {
	select {
	case <-notify:
		rs.dropIfRestarted()
		return true
	case <-ctx.Done():
	case <-rs.srv.eng.closed:
	}
	for _, q := range rs.seqs {
		rs.srv.eng.Abort(q)
	}
	return false
}

func (rs *responder) allDone() bool {
	for _, q := range rs.seqs {
		if d, _ := q.Done(); !d {
			return false
		}
	}
	return true
}

func (rs *responder) usage() (prompt, completion int) {
	for _, q := range rs.seqs {
		prompt += q.promptTokens
		completion += q.Generated()
	}
	return
}

func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	return append(b, '}')
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func (rs *responder) whole(w http.ResponseWriter, ctx context.Context, notify chan struct{}) {
	for !rs.allDone() {
		if !rs.wait(ctx, notify) {
			return
		}
	}
	rs.dropIfRestarted()
	b := make([]byte, 0, 256)
	b = append(b, `{"id":"`+rs.id+`","object":`...)
	if rs.req.chat {
		b = append(b, `"chat.completion"`...)
	} else {
		b = append(b, `"text_completion"`...)
	}
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, rs.created, 10)
	b = append(b, `,"model":`...)
	b = append(b, jsonString(rs.req.model)...)
	b = append(b, `,"choices":[`...)
	for i, q := range rs.seqs {
		if i > 0 {
			b = append(b, ',')
		}
		_, reason := q.Done()
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		if rs.req.chat {
			b = append(b, `,"message":{"role":"assistant","reasoning_content":null,"content":"`...)
		} else {
			b = append(b, `,"text":"`...)
		}
		for k := 0; k < q.Generated(); k++ {
			b = append(b, fillerToken(q.seed, k)...)
		}
		if rs.req.chat {
			b = append(b, `","tool_calls":[]}`...)
		} else {
			b = append(b, '"')
		}
		b = append(b, `,"logprobs":null,"finish_reason":"`+reason+`","stop_reason":null`...)
		if !rs.req.chat {
			b = append(b, `,"prompt_logprobs":null`...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"usage":`...)
	p, c := rs.usage()
	b = appendUsage(b, p, c)
	b = append(b, `,"kv_transfer_params":null}`...)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// stream writes SSE as vLLM does: one chunk per new token (tokens that
// arrived together are written and flushed together), the finish reason on
// the last token's chunk, with include_usage a final chunk with empty
// choices and the usage, then [DONE].
func (rs *responder) stream(w http.ResponseWriter, ctx context.Context, notify chan struct{}) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	// Every chunk of this request starts with the same bytes.
	var head []byte
	head = append(head, `data: {"id":"`+rs.id+`","object":`...)
	if rs.req.chat {
		head = append(head, `"chat.completion.chunk"`...)
	} else {
		head = append(head, `"text_completion"`...)
	}
	head = append(head, `,"created":`...)
	head = strconv.AppendInt(head, rs.created, 10)
	head = append(head, `,"model":`...)
	head = append(head, jsonString(rs.req.model)...)
	head = append(head, `,"choices":[`...)

	sent := make([]int, len(rs.seqs))
	finished := make([]bool, len(rs.seqs))
	buf := make([]byte, 0, 4096)
	remaining := len(rs.seqs)
	for remaining > 0 {
		if !rs.wait(ctx, notify) {
			return
		}
		buf = buf[:0]
		for i, q := range rs.seqs {
			if finished[i] {
				continue
			}
			done, reason := q.Done() // read before Generated: done implies final count
			n := q.Generated()
			for k := sent[i]; k < n; k++ {
				if rs.req.chat && k == 0 {
					buf = append(buf, head...)
					buf = appendIndex(buf, i)
					buf = append(buf, `,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
				}
				buf = append(buf, head...)
				buf = appendIndex(buf, i)
				if rs.req.chat {
					buf = append(buf, `,"delta":{"content":"`...)
					buf = append(buf, fillerToken(q.seed, k)...)
					buf = append(buf, `"},"logprobs":null,"finish_reason":`...)
				} else {
					buf = append(buf, `,"text":"`...)
					buf = append(buf, fillerToken(q.seed, k)...)
					buf = append(buf, `","logprobs":null,"finish_reason":`...)
				}
				if done && k == n-1 {
					buf = append(buf, `"`+reason+`","stop_reason":null}]`...)
				} else {
					buf = append(buf, `null}]`...)
				}
				if rs.req.continuousUsage {
					buf = append(buf, `,"usage":`...)
					buf = appendUsage(buf, q.promptTokens, k+1)
				}
				buf = append(buf, "}\n\n"...)
			}
			sent[i] = n
			if done {
				finished[i] = true
				remaining--
			}
		}
		if remaining == 0 {
			if rs.req.includeUsage {
				buf = append(buf, head...)
				buf = append(buf, `],"usage":`...)
				p, c := rs.usage()
				buf = appendUsage(buf, p, c)
				buf = append(buf, "}\n\n"...)
			}
			buf = append(buf, "data: [DONE]\n\n"...)
		}
		if len(buf) == 0 {
			continue
		}
		if _, err := w.Write(buf); err != nil {
			for _, q := range rs.seqs {
				rs.srv.eng.Abort(q)
			}
			return
		}
		_ = rc.Flush()
	}
}

func appendIndex(b []byte, i int) []byte {
	b = append(b, `{"index":`...)
	return strconv.AppendInt(b, int64(i), 10)
}
