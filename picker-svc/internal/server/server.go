// Package server serves the pick API, the picker's own metrics, health and
// readiness, and a JSON view of its state.
package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/capped"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
)

// Server is the picker's HTTP surface: the pick API (a door to the
// decision), metrics, health, readiness and the debug view.
type Server struct {
	store     *datastore.Store
	decider   *decision.Decider
	metrics   *Metrics
	discovery Discovery // nil: nothing to wait for
	now       func() time.Time
	bufs      sync.Pool
	// readyChecks are further conditions of readiness (RequireReady).
	readyChecks []func() error
}

// RequireReady adds a condition to readiness: /readyz answers 503 with
// check's error until it returns nil. Call it before serving.
func (s *Server) RequireReady(check func() error) { s.readyChecks = append(s.readyChecks, check) }

// Discovery is what readiness asks of endpoint discovery: whether its
// first full sync is applied, and if not, why.
type Discovery interface {
	Synced() (bool, string)
}

// New wires a server.
func New(store *datastore.Store, decider *decision.Decider, metrics *Metrics) *Server {
	s := &Server{store: store, decider: decider, metrics: metrics, now: time.Now}
	s.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	return s
}

// WaitFor makes readiness wait for d's first full sync.
func (s *Server) WaitFor(d Discovery) *Server {
	s.discovery = d
	return s
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(pickapi.Path, s.pick)
	mux.HandleFunc("GET "+pickapi.ResolutionPath, s.resolution)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.ready)
	mux.HandleFunc("GET /debug/state", s.debug)
	mux.HandleFunc("GET /debug/picks", s.debugPicks)
	return mux
}

// Ready reports whether picks are answered as configured: discovery has
// applied its first full sync (every pool, model, rewrite and objective
// known: before, a virtual model name would be refused or sent on
// unrewritten), and at least one endpoint has fresh metrics (a pool's
// current endpoints, or those it hands over while its new ones have none).
// After the first sync, an API server outage leaves it ready: the last
// known endpoints keep being scraped, and routing on them beats no routing;
// the discovery metrics show the outage. It says why not.
func (s *Server) Ready() (bool, string) {
	if s.discovery != nil {
		if ok, why := s.discovery.Synced(); !ok {
			return false, why
		}
	}
	for _, c := range s.readyChecks {
		if err := c(); err != nil {
			return false, err.Error()
		}
	}
	now := s.now()
	for _, pv := range s.store.View().Pools {
		for _, ep := range pv.Endpoints {
			if _, ok := ep.Eligible(now); ok {
				return true, ""
			}
		}
		if now.Before(pv.HandoverUntil) {
			for _, ep := range pv.Handover {
				if _, ok := ep.Eligible(now); ok {
					return true, ""
				}
			}
		}
	}
	return false, "no endpoint has fresh metrics yet"
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if ok, why := s.Ready(); !ok {
		http.Error(w, why, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) pick(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.decider.Observe(start, "", decision.OutcomeBadRequest)
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
		s.decider.Observe(start, "", decision.OutcomeBadRequest)
		s.refuse(w, http.StatusBadRequest, pickapi.ErrTypeBadRequest, err.Error())
		return
	}
	d := s.decider.Decide(&req, nil, start)
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

// resolution serves a pool's resolution table (query parameter "pool";
// none: the table of a filter that names no pool).
func (s *Server) resolution(w http.ResponseWriter, r *http.Request) {
	pool := r.URL.Query().Get("pool")
	if len(pool) > pickapi.MaxNameLen {
		s.refuse(w, http.StatusBadRequest, pickapi.ErrTypeBadRequest, "pool is longer than "+strconv.Itoa(pickapi.MaxNameLen)+" bytes")
		return
	}
	b := s.decider.Resolution(pool)
	switch {
	case errors.Is(b.Err, resolve.ErrUnknownPool):
		s.refuse(w, http.StatusNotFound, pickapi.ErrTypeNotFound, b.Err.Error())
		return
	case b.Err != nil:
		s.refuse(w, http.StatusServiceUnavailable, pickapi.ErrTypeUnavailable, "the resolution table is not offered: "+b.Err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b.JSON)
}

func (s *Server) refuse(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(pickapi.ErrorBody(status, typ, msg))
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
	// Handover: the previous endpoints still routed to while none of the
	// new ones has metrics.
	Handover []string `json:"handover,omitempty"`
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
				Criticality: string(inference.PriorityCriticality(o.Priority))})
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
		if now.Before(pv.HandoverUntil) {
			for _, ep := range pv.Handover {
				dp.Handover = append(dp.Handover, ep.Addr)
			}
		}
		out = append(out, dp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	state := map[string]any{"pools": out}
	state["ready"], state["not_ready_because"] = s.Ready()
	if state["ready"] == true {
		delete(state, "not_ready_because")
	}
	_ = enc.Encode(state)
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
