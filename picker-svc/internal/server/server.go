// Package server serves the pick API, the picker's own metrics, health and
// readiness, and a JSON view of its state.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/filter/llmapi"
	"github.com/meshllm/meshllm/picker-svc/internal/capped"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
	"github.com/meshllm/meshllm/picker-svc/pickapi"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is the picker's HTTP surface.
type Server struct {
	store   *datastore.Store
	resolve *resolve.Resolver
	sched   *scheduling.Scheduler
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	bufs    sync.Pool
	// refusal logging: once per change of (pool, outcome), not per request.
	lastRefusal atomic.Pointer[string]
}

// New wires a server.
func New(store *datastore.Store, res *resolve.Resolver, sched *scheduling.Scheduler, metrics *Metrics, log *slog.Logger) *Server {
	s := &Server{store: store, resolve: res, sched: sched, metrics: metrics, log: log, now: time.Now}
	s.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	return s
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(pickapi.Path, s.pick)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /debug/state", s.debug)
	return mux
}

// Ready reports whether at least one endpoint has a fresh snapshot.
func (s *Server) Ready() bool {
	now := s.now()
	for _, pv := range s.store.View().Pools {
		for _, ep := range pv.Endpoints {
			if _, ok := ep.Eligible(now); ok {
				return true
			}
		}
	}
	return false
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if !s.Ready() {
		http.Error(w, "no endpoint has fresh metrics yet", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) pick(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.observe(start, "", OutcomeBadRequest)
		s.refuse(w, http.StatusMethodNotAllowed, pickapi.ErrTypeBadRequest, "use POST")
		return
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	body, err := capped.ReadAll((*bp)[:0], r.Body, pickapi.MaxRequestSize)
	*bp = body
	if errors.Is(err, capped.ErrTooLarge) {
		err = errors.New("pick request larger than " + strconv.Itoa(pickapi.MaxRequestSize) + " bytes")
	}
	var req pickapi.PickRequest
	if err == nil {
		req, err = pickapi.ParsePickRequest(body)
	}
	if err != nil {
		s.observe(start, "", OutcomeBadRequest)
		s.refuse(w, http.StatusBadRequest, pickapi.ErrTypeBadRequest, err.Error())
		return
	}
	d := s.Decide(&req, nil, start)
	if d.Status != http.StatusOK {
		s.refuse(w, d.Status, d.ErrType, d.Message)
		return
	}
	out := d.Pick.AppendJSON((*bp)[:0])
	*bp = out
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	_, _ = w.Write(out)
}

// Decision is a pick's result whatever the transport (the HTTP pick API,
// ext_proc): Status 200 with Pick, or a refusal in pickapi.ErrorBody's
// terms.
type Decision struct {
	Status  int
	Pick    pickapi.PickResponse
	ErrType string
	Message string
}

// Decide places req: it takes the request ends req reports, resolves the
// model, and picks among the pool's endpoints, or among those of them
// listed in subset when subset is not nil (the endpoint-picker protocol's
// subset hint; none of them usable is a 503). It counts the pick in the
// picker's metrics, with its latency since start.
func (s *Server) Decide(req *pickapi.PickRequest, subset []string, start time.Time) (d Decision) {
	strategy, outcome := pickapi.Strategy(""), OutcomePicked
	defer func() { s.observe(start, strategy, outcome) }()
	if len(req.Done) > 0 {
		// Before anything can refuse the pick: the ends are news either way.
		s.metrics.endsReported.Add(float64(len(req.Done)))
		s.sched.RequestsDone(req.Done, s.now())
	}
	res, err := s.resolve.Resolve(s.store.View(), req.Pool, req.Model, req.Objective, req.Criticality)
	if err != nil {
		outcome = OutcomeUnknown
		return s.refusal(http.StatusNotFound, pickapi.ErrTypeNotFound, err.Error(), req.Pool+"|"+req.Model)
	}
	pool := res.Pool.Pool.Name
	strategy = res.Pool.Pool.Strategy
	eps := res.Pool.Endpoints
	if subset != nil {
		eps = inSubset(eps, subset)
		if len(eps) == 0 {
			outcome = OutcomeNoEndpoints
			return s.refusal(http.StatusServiceUnavailable, pickapi.ErrTypeUnavailable,
				"none of the gateway's "+strconv.Itoa(len(subset))+" subset endpoints is in pool "+quote(pool), pool+"|subset")
		}
	}
	sreq := scheduling.Request{TargetModel: res.TargetModel, Criticality: res.Criticality, PrefixHashes: req.PrefixHashes,
		PromptTokens: req.PromptBytes / pickapi.BytesPerToken}
	result, err := s.sched.Pick(eps, strategy, &sreq, s.now())
	switch {
	case errors.Is(err, scheduling.ErrNoEndpoints):
		outcome = OutcomeNoEndpoints
		return s.refusal(http.StatusServiceUnavailable, pickapi.ErrTypeUnavailable,
			"pool "+quote(pool)+" has no endpoint with metrics yet", pool+"|503")
	case err != nil:
		outcome = "error"
		return Decision{Status: http.StatusInternalServerError, ErrType: pickapi.ErrTypeInternal, Message: err.Error()}
	case result.Outcome == scheduling.Shed:
		outcome = OutcomeShed
		class := string(res.Criticality)
		if res.Objective != "" {
			class += " (InferenceObjective " + quote(res.Objective) + ", priority " + strconv.Itoa(int(res.Priority)) + ")"
		}
		return s.refusal(http.StatusTooManyRequests, pickapi.ErrTypeRateLimited,
			"every endpoint of pool "+quote(pool)+" is saturated; "+class+" requests are shed, retry later", pool+"|429|"+string(res.Criticality))
	case result.Outcome == scheduling.Stale:
		outcome = OutcomeStale
		s.metrics.stalePicks.WithLabelValues(pool).Inc()
		s.noteState(pool+"|fallback", slog.LevelWarn, "no eligible endpoint (metrics stale or failing); picking among all", "pool", pool)
	default:
		s.noteState("ok", slog.LevelInfo, "picks succeeding again")
	}
	d = Decision{Status: http.StatusOK, Pick: pickapi.PickResponse{Endpoint: result.Endpoints[0].Addr, TargetModel: res.TargetModel,
		Strategy: strategy, Pool: pool, PickID: result.PickID}}
	if n := len(result.Endpoints) - 1; n > 0 {
		d.Pick.Fallbacks = make([]string, n)
		for i, ep := range result.Endpoints[1:] {
			d.Pick.Fallbacks[i] = ep.Addr
		}
	}
	return d
}

// RequestsDone takes request ends reported outside a pick (ext_proc sees
// each request's end on its own stream).
func (s *Server) RequestsDone(ids []uint64) {
	s.metrics.endsReported.Add(float64(len(ids)))
	s.sched.RequestsDone(ids, s.now())
}

// RecordUsage counts a response's token usage seen over ext_proc.
func (s *Server) RecordUsage(model, target string, oc llmapi.Outcome) {
	s.metrics.RecordUsage(model, target, oc)
}

// inSubset keeps the endpoints whose address is listed.
func inSubset(eps []*scrape.Endpoint, subset []string) []*scrape.Endpoint {
	var out []*scrape.Endpoint
	for _, ep := range eps {
		for _, a := range subset {
			if ep.Addr == a {
				out = append(out, ep)
				break
			}
		}
	}
	return out
}

func (s *Server) observe(start time.Time, strategy pickapi.Strategy, outcome string) {
	s.metrics.pickLatency.Observe(time.Since(start).Seconds())
	s.metrics.picks.WithLabelValues(string(strategy), outcome).Inc()
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func (s *Server) refuse(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(pickapi.ErrorBody(status, typ, msg))
}

// refusal is a refused Decision, logged once per change of refusal state,
// so an unknown model asked for 10,000 times a second logs once.
func (s *Server) refusal(status int, typ, msg, state string) Decision {
	s.noteState(state, slog.LevelWarn, "refusing picks", "status", status, "reason", msg)
	return Decision{Status: status, ErrType: typ, Message: msg}
}

func (s *Server) noteState(state string, level slog.Level, msg string, args ...any) {
	if p := s.lastRefusal.Load(); p != nil && *p == state {
		return
	}
	prev := s.lastRefusal.Swap(&state)
	if prev == nil && state == "ok" {
		return // first pick of a healthy picker: nothing changed
	}
	if prev != nil && *prev == state {
		return // another request logged it
	}
	s.log.Log(context.Background(), level, msg, args...)
}

type debugEndpoint struct {
	Address   string   `json:"address"`
	Eligible  bool     `json:"eligible"`
	Failures  int      `json:"consecutive_failures"`
	LastError string   `json:"last_error,omitempty"`
	Engine    string   `json:"engine"`               // the dialect pages are read as (auto: detected)
	ScrapedAs string   `json:"scraped_as,omitempty"` // the dialect of the last good page
	AgeMS     *int64   `json:"snapshot_age_ms,omitempty"`
	Waiting   float64  `json:"waiting"`
	Running   float64  `json:"running"`
	KVCache   float64  `json:"kv_cache_usage"`
	MaxLoRA   int      `json:"max_lora"`
	LoRARun   []string `json:"running_adapters,omitempty"`
	LoRAWait  []string `json:"waiting_adapters,omitempty"`
}

type debugModel struct {
	ModelName   string           `json:"model_name"`
	Criticality string           `json:"criticality"`
	Targets     map[string]int32 `json:"targets"`
}

type debugRewrite struct {
	// Model is the exact model name the rule matches, "*" for a generic rule.
	Model   string           `json:"model"`
	Rewrite string           `json:"rewrite"` // namespace/name
	Rule    int              `json:"rule"`
	Targets map[string]int32 `json:"targets"`
}

type debugObjective struct {
	Name        string `json:"name"`
	Priority    int32  `json:"priority"`
	Criticality string `json:"criticality"` // the shedding class the priority maps to
}

type debugPool struct {
	Name       string           `json:"name"`
	Strategy   string           `json:"strategy"`
	Port       int32            `json:"target_port"`
	Selector   string           `json:"selector"`
	Models     []debugModel     `json:"models"`
	Rewrites   []debugRewrite   `json:"rewrites,omitempty"`
	Objectives []debugObjective `json:"objectives,omitempty"`
	Conflicts  []string         `json:"conflicts,omitempty"`
	Endpoints  []debugEndpoint  `json:"endpoints"`
}

func weights(ts []inference.Target) map[string]int32 {
	out := make(map[string]int32, len(ts))
	for _, t := range ts {
		out[t.Name] = t.Weight
	}
	return out
}

func (s *Server) debug(w http.ResponseWriter, _ *http.Request) {
	now := s.now()
	var out []debugPool
	for _, pv := range s.store.View().Pools {
		dp := debugPool{Name: pv.Pool.Name, Strategy: string(pv.Pool.Strategy), Port: pv.Pool.TargetPort, Selector: selectorString(pv.Pool.Selector)}
		for _, m := range pv.Models {
			dm := debugModel{ModelName: m.ModelName, Criticality: string(m.Criticality), Targets: map[string]int32{}}
			for _, t := range m.Targets {
				dm.Targets[t.Name] = t.Weight
			}
			dp.Models = append(dp.Models, dm)
		}
		sort.Slice(dp.Models, func(i, j int) bool { return dp.Models[i].ModelName < dp.Models[j].ModelName })
		for model, r := range pv.Rewrites {
			dp.Rewrites = append(dp.Rewrites, debugRewrite{Model: model, Rewrite: r.Rewrite, Rule: r.Rule, Targets: weights(r.Targets)})
		}
		sort.Slice(dp.Rewrites, func(i, j int) bool { return dp.Rewrites[i].Model < dp.Rewrites[j].Model })
		if g := pv.GenericRewrite; g != nil {
			dp.Rewrites = append(dp.Rewrites, debugRewrite{Model: "*", Rewrite: g.Rewrite, Rule: g.Rule, Targets: weights(g.Targets)})
		}
		for _, o := range pv.Objectives {
			dp.Objectives = append(dp.Objectives, debugObjective{Name: o.Name, Priority: o.Priority,
				Criticality: string(scheduling.PriorityCriticality(o.Priority))})
		}
		sort.Slice(dp.Objectives, func(i, j int) bool { return dp.Objectives[i].Name < dp.Objectives[j].Name })
		dp.Conflicts = pv.Conflicts
		for _, ep := range pv.Endpoints {
			snap, ok := ep.Eligible(now)
			de := debugEndpoint{Address: ep.Addr, Eligible: ok, Failures: ep.Failures(), LastError: ep.LastError(), Engine: string(ep.Engine())}
			if snap != nil {
				de.ScrapedAs = string(snap.Engine)
				age := now.Sub(snap.ScrapedAt).Milliseconds()
				de.AgeMS = &age
				de.Waiting, de.Running, de.KVCache = snap.Waiting, snap.Running, snap.KVCacheUsage
				de.MaxLoRA, de.LoRARun, de.LoRAWait = snap.MaxLoRA, snap.RunningAdapters, snap.WaitingAdapters
			}
			dp.Endpoints = append(dp.Endpoints, de)
		}
		out = append(out, dp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(map[string]any{"ready": s.Ready(), "pools": out})
}

func selectorString(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ","
		}
		s += k + "=" + sel[k]
	}
	return s
}
