// Package decision is the pick decision, whatever door a request came in
// by: the filter's HTTP pick API (server/) or Envoy's ext_proc (extproc/).
// It resolves the model, asks the scheduler, takes request ends, records
// what the ext_proc path sees of each request (tokens, status, timing),
// and counts all of it.
package decision

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// Decision is a pick's result whatever the transport (the HTTP pick API,
// ext_proc): Status 200 with Pick, or a refusal in pickapi.ErrorBody's
// terms.
type Decision struct {
	Status  int
	Pick    pickapi.PickResponse
	ErrType string
	Message string
}

// Decider places requests.
type Decider struct {
	store   *datastore.Store
	resolve *resolve.Resolver
	sched   *scheduling.Scheduler
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	// tables are the pools' resolution tables, whose versions picks carry.
	tables *resolve.Tables
	// refusal logging: once per change of (pool, outcome), not per request.
	lastRefusal atomic.Pointer[string]
}

// New wires a decider.
func New(store *datastore.Store, res *resolve.Resolver, sched *scheduling.Scheduler, metrics *Metrics, log *slog.Logger) *Decider {
	d := &Decider{store: store, resolve: res, sched: sched, metrics: metrics, log: log, now: time.Now}
	d.tables = resolve.NewTables(func(pool string, err error) {
		log.Warn("not offering the resolution table to filters: they will not resolve models while the picker is away",
			"pool", pool, "reason", err.Error())
	})
	return d
}

// Resolution is the resolution table a request naming pool ("" for none)
// is resolved by, for a filter to keep (pickapi.Resolution).
func (s *Decider) Resolution(pool string) *resolve.Built {
	return s.tables.Get(s.store.View(), pool)
}

// Decide places req: it takes the request ends req reports, resolves the
// model, and picks among the pool's endpoints, or among those of them
// listed in subset when subset is not nil (the endpoint-picker protocol's
// subset hint; none of them usable is a 503). It counts the pick in the
// picker's metrics, with its latency since start.
func (s *Decider) Decide(req *pickapi.PickRequest, subset []string, start time.Time) (d Decision) {
	strategy, outcome := pickapi.Strategy(""), OutcomePicked
	defer func() { s.Observe(start, strategy, outcome) }()
	if len(req.Done) > 0 {
		// Before anything can refuse the pick: the ends are news either way.
		s.metrics.endsReported.Add(float64(len(req.Done)))
		s.sched.RequestsDone(requestEnds(req.Done, req.DoneTokens), s.now())
	}
	view := s.store.View()
	res, err := s.resolve.Resolve(view, req.Pool, req.Model, req.Objective, req.Criticality)
	if err != nil {
		outcome = OutcomeUnknown
		return s.refusal(http.StatusNotFound, pickapi.ErrTypeNotFound, err.Error(), req.Pool+"|"+req.Model)
	}
	pool := res.Pool.Pool.Name
	strategy = res.Pool.Pool.Strategy
	now := s.now()
	eps := res.Pool.Endpoints
	if h := handedOver(res.Pool, now); h != nil {
		eps = h
		s.metrics.handoverPicks.WithLabelValues(pool).Inc()
	}
	if subset != nil {
		eps = inSubset(eps, subset)
		if len(eps) == 0 {
			outcome = OutcomeNoEndpoints
			return s.refusal(http.StatusServiceUnavailable, pickapi.ErrTypeUnavailable,
				"none of the gateway's "+strconv.Itoa(len(subset))+" subset endpoints is in pool "+quote(pool), pool+"|subset")
		}
	}
	sreq := scheduling.Request{TargetModel: res.TargetModel, Criticality: res.Criticality, PrefixHashes: req.PrefixHashes,
		PromptTokens: req.PromptBytes / pickapi.BytesPerToken, Body: req.Body, MaxTokens: req.MaxTokens, Explain: req.Explain}
	result, err := s.sched.Pick(eps, strategy, &sreq, now)
	switch {
	case errors.Is(err, scheduling.ErrNoEndpoints):
		outcome = OutcomeNoEndpoints
		return s.refusal(http.StatusServiceUnavailable, pickapi.ErrTypeUnavailable,
			"pool "+quote(pool)+" has no endpoint with metrics yet", pool+"|503")
	case err != nil:
		outcome = OutcomeError
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
	result.Endpoints[0].CountPick()
	d = Decision{Status: http.StatusOK, Pick: pickapi.PickResponse{Endpoint: result.Endpoints[0].Addr, TargetModel: res.TargetModel,
		Strategy: strategy, Pool: pool, PickID: result.PickID, Resolution: s.tables.Get(view, req.Pool).Version,
		APILevel: pickapi.APILevel}}
	if req.Explain && result.Explanation != nil {
		d.Pick.Explain = result.Explanation.Line(pickapi.MaxExplainLen)
	}
	if n := len(result.Endpoints) - 1; n > 0 {
		d.Pick.Fallbacks = make([]string, n)
		for i, ep := range result.Endpoints[1:] {
			d.Pick.Fallbacks[i] = ep.Addr
		}
	}
	return d
}

// RequestEnded takes a request end seen outside a pick (ext_proc sees
// each request's end on its own stream): the pick's id and the completion
// tokens it generated (-1: not known).
func (s *Decider) RequestEnded(id uint64, completionTokens int) {
	s.metrics.endsReported.Inc()
	s.sched.RequestsDone([]scheduling.RequestEnd{{ID: id, CompletionTokens: completionTokens}}, s.now())
}

// requestEnds pairs reported ids with their completion tokens (tokens may
// be nil: none known).
func requestEnds(ids []uint64, tokens []int) []scheduling.RequestEnd {
	out := make([]scheduling.RequestEnd, len(ids))
	for i, id := range ids {
		out[i] = scheduling.RequestEnd{ID: id, CompletionTokens: -1}
		if i < len(tokens) {
			out[i].CompletionTokens = tokens[i]
		}
	}
	return out
}

// RecentPicks returns the explanations of the scheduler's last picks,
// newest first.
func (s *Decider) RecentPicks() []*scheduling.Explanation { return s.sched.RecentPicks() }

// RecordExchange counts a request seen over ext_proc, at its end.
func (s *Decider) RecordExchange(e Exchange) {
	s.metrics.gatewayPath.record(e)
}

// handedOver returns the pool's handed-over endpoints that have fresh
// metrics, when none of its current ones has (datastore's Handover); else
// nil.
func handedOver(pv *datastore.PoolView, now time.Time) []*scrape.Endpoint {
	if len(pv.Handover) == 0 || !now.Before(pv.HandoverUntil) {
		return nil
	}
	for _, ep := range pv.Endpoints {
		if _, ok := ep.Eligible(now); ok {
			return nil
		}
	}
	var out []*scrape.Endpoint
	for _, ep := range pv.Handover {
		if _, ok := ep.Eligible(now); ok {
			out = append(out, ep)
		}
	}
	return out
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

// Observe counts one pick (or refusal) and its latency since start.
func (s *Decider) Observe(start time.Time, strategy pickapi.Strategy, outcome string) {
	s.metrics.pickLatency.Observe(time.Since(start).Seconds())
	s.metrics.picks.WithLabelValues(string(strategy), outcome).Inc()
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// refusal is a refused Decision, logged once per change of refusal state,
// so an unknown model asked for 10,000 times a second logs once.
func (s *Decider) refusal(status int, typ, msg, state string) Decision {
	s.noteState(state, slog.LevelWarn, "refusing picks", "status", status, "reason", msg)
	return Decision{Status: status, ErrType: typ, Message: msg}
}

func (s *Decider) noteState(state string, level slog.Level, msg string, args ...any) {
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

// SetClock replaces the decider's clock (time.Now), for tests that age
// every snapshot at once.
func (s *Decider) SetClock(now func() time.Time) { s.now = now }
