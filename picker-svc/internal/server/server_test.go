package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/pickapi"
	"github.com/meshllm/meshllm/picker-svc/internal/datastore"
	"github.com/meshllm/meshllm/picker-svc/internal/decision"
	"github.com/meshllm/meshllm/picker-svc/internal/inference"
	"github.com/meshllm/meshllm/picker-svc/internal/resolve"
	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
	"github.com/meshllm/meshllm/picker-svc/internal/scrape"
)

// vllm is a fake vLLM /metrics endpoint with settable load.
type vllm struct {
	waiting, kv atomic.Value
	srv         *httptest.Server
}

func newVLLM(t *testing.T, waiting, kv float64) *vllm {
	v := &vllm{}
	v.waiting.Store(waiting)
	v.kv.Store(kv)
	v.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "vllm:num_requests_running{model_name=\"base-model\"} 1\nvllm:num_requests_waiting %v\nvllm:kv_cache_usage_perc %v\n",
			v.waiting.Load(), v.kv.Load())
	}))
	t.Cleanup(v.srv.Close)
	return v
}

func (v *vllm) addr() string { return strings.TrimPrefix(v.srv.URL, "http://") }

type logCounter struct {
	mu   sync.Mutex
	warn int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Level == slog.LevelWarn {
		h.warn++
	}
	return nil
}
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCounter) WithGroup(string) slog.Handler      { return h }
func (h *logCounter) warns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.warn
}

type fixture struct {
	store *datastore.Store
	srv   *Server
	dec   *decision.Decider
	http  *httptest.Server
	logs  *logCounter
}

func newFixture(t *testing.T) *fixture {
	logs := &logCounter{}
	log := slog.New(logs)
	var store *datastore.Store
	metrics := NewMetrics()
	mgr := scrape.NewManager(scrape.Config{Interval: 10 * time.Millisecond, Logger: log, Observer: metrics})
	t.Cleanup(mgr.Close)
	store = datastore.New(mgr, log, nil)
	metrics.CollectEndpoints(store)
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "pool.yaml"))
	require.NoError(t, err)
	objs, err := inference.ParseYAML(b)
	require.NoError(t, err)
	store.ReplaceObjects(objs)
	dec := decision.New(store, resolve.New(nil), mustScheduler(), decision.NewMetrics(metrics.Registry), log)
	s := New(store, dec, metrics)
	h := httptest.NewServer(s.Handler())
	t.Cleanup(h.Close)
	return &fixture{store: store, srv: s, dec: dec, http: h, logs: logs}
}

func (f *fixture) post(t *testing.T, body string) (int, []byte) {
	resp, err := http.Post(f.http.URL+pickapi.Path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func (f *fixture) get(t *testing.T, path string) (int, string) {
	resp, err := http.Get(f.http.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// waitReady waits (bounded) for the background scrapers to fill snapshots.
func (f *fixture) waitReady(t *testing.T, n int) {
	require.Eventually(t, func() bool {
		fresh := 0
		for _, m := range f.store.View().Pools["sim-pool"].Endpoints {
			if _, ok := m.Eligible(time.Now()); ok {
				fresh++
			}
		}
		return fresh >= n
	}, 10*time.Second, 2*time.Millisecond)
}

func errorBody(t *testing.T, b []byte) (code int, typ, msg string) {
	var v struct {
		Error struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    int    `json:"code"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	return v.Error.Code, v.Error.Type, v.Error.Message
}

func TestPickEndToEnd(t *testing.T) {
	f := newFixture(t)
	code, _ := f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready without endpoints")
	code, _ = f.get(t, "/healthz")
	require.Equal(t, http.StatusOK, code)

	status, body := f.post(t, `{"model":"chat"}`)
	require.Equal(t, http.StatusServiceUnavailable, status, "empty pool")
	c, typ, _ := errorBody(t, body)
	require.Equal(t, 503, c)
	require.Equal(t, pickapi.ErrTypeUnavailable, typ)

	busy, calm := newVLLM(t, 4, 0.7), newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{busy.addr(), calm.addr()})
	f.waitReady(t, 2)
	code, _ = f.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)
	var warm atomic.Bool
	f.srv.RequireReady(func() error {
		if !warm.Load() {
			return errors.New("waiting for peer replicas' state")
		}
		return nil
	})
	code, why := f.get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "a further condition holds readiness back")
	require.Contains(t, why, "peer replicas")
	warm.Store(true)
	code, _ = f.get(t, "/readyz")
	require.Equal(t, http.StatusOK, code)

	status, body = f.post(t, `{"model":"chat","prefix_hashes":[1,2,3]}`)
	require.Equal(t, http.StatusOK, status, string(body))
	resp, err := pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, calm.addr(), resp.Endpoint)
	require.Equal(t, []string{busy.addr()}, resp.Fallbacks)
	require.Contains(t, []string{"chat-lora-stable", "chat-lora-canary"}, resp.TargetModel)
	require.Equal(t, pickapi.StrategyPrefixCache, resp.Strategy)
	require.Equal(t, "sim-pool", resp.Pool)

	// Removing an endpoint is reflected at once.
	f.store.SetEndpoints("sim-pool", []string{busy.addr()})
	status, body = f.post(t, `{"model":"base-model","pool":"sim-pool"}`)
	require.Equal(t, http.StatusOK, status)
	resp, err = pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, busy.addr(), resp.Endpoint)
	require.Equal(t, "base-model", resp.TargetModel)
}

// Each pick has its own id; ids reported done are taken even by a pick the
// picker refuses.
func TestPickIDsAndReportedEnds(t *testing.T) {
	f := newFixture(t)
	v := newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)
	ids := map[uint64]bool{}
	for i := 0; i < 3; i++ {
		status, body := f.post(t, `{"model":"chat"}`)
		require.Equal(t, http.StatusOK, status)
		resp, err := pickapi.ParsePickResponse(body)
		require.NoError(t, err)
		require.NotZero(t, resp.PickID)
		ids[resp.PickID] = true
	}
	require.Len(t, ids, 3)
	var done []string
	for id := range ids {
		done = append(done, strconv.FormatUint(id, 10))
	}
	status, _ := f.post(t, `{"model":"nobody","done":[`+strings.Join(done, ",")+`]}`)
	require.Equal(t, http.StatusNotFound, status)
	status, _ = f.post(t, `{"model":"chat","done":[0]}`)
	require.Equal(t, http.StatusBadRequest, status, "a bad id is a bad request")
	_, m := f.get(t, "/metrics")
	require.Contains(t, m, "meshllm_picker_request_ends_reported_total 3")
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	v := newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)
	for _, tc := range []struct {
		body   string
		status int
		typ    string
		msg    string
	}{
		{`{"model":"gpt-9"}`, 404, pickapi.ErrTypeNotFound, `unknown model "gpt-9"`},
		{`{"model":"chat","pool":"nope"}`, 404, pickapi.ErrTypeNotFound, `unknown pool "nope"`},
		{`{"model":`, 400, pickapi.ErrTypeBadRequest, "not valid JSON"},
		{`{"model":"chat","criticality":"Urgent"}`, 400, pickapi.ErrTypeBadRequest, "unknown criticality"},
		{`{"model":"chat","pad":"` + strings.Repeat("x", pickapi.MaxRequestSize) + `"}`, 400, pickapi.ErrTypeBadRequest, "larger than"},
	} {
		status, body := f.post(t, tc.body)
		require.Equal(t, tc.status, status, tc.body[:min(len(tc.body), 40)])
		code, typ, msg := errorBody(t, body)
		require.Equal(t, tc.status, code)
		require.Equal(t, tc.typ, typ)
		require.Contains(t, msg, tc.msg)
	}
	code, _ := f.get(t, pickapi.Path)
	require.Equal(t, http.StatusMethodNotAllowed, code)

	// 100 identical 404s log once.
	before := f.logs.warns()
	for i := 0; i < 100; i++ {
		status, _ := f.post(t, `{"model":"gpt-10"}`)
		require.Equal(t, 404, status)
	}
	require.Equal(t, before+1, f.logs.warns())
}

func TestSheddingOverHTTP(t *testing.T) {
	f := newFixture(t)
	a, b := newVLLM(t, 20, 0.5), newVLLM(t, 0, 0.9) // both saturated for Sheddable
	f.store.SetEndpoints("sim-pool", []string{a.addr(), b.addr()})
	f.waitReady(t, 2)
	status, body := f.post(t, `{"model":"batch"}`) // Sheddable by its InferenceModel
	require.Equal(t, http.StatusTooManyRequests, status)
	code, typ, msg := errorBody(t, body)
	require.Equal(t, 429, code)
	require.Equal(t, pickapi.ErrTypeRateLimited, typ)
	require.Contains(t, msg, "Sheddable")
	status, _ = f.post(t, `{"model":"base-model"}`) // Critical
	require.Equal(t, http.StatusOK, status)
	status, _ = f.post(t, `{"model":"chat"}`) // Standard: under its higher thresholds
	require.Equal(t, http.StatusOK, status)

	// One pod recovers: Sheddable traffic is served again, on it.
	b.kv.Store(0.2)
	require.Eventually(t, func() bool {
		s := b.addr()
		for _, m := range f.store.View().Pools["sim-pool"].Endpoints {
			if snap := m.Snapshot(); m.Addr == s && snap != nil && snap.KVCacheUsage == 0.2 {
				return true
			}
		}
		return false
	}, 10*time.Second, 2*time.Millisecond)
	status, body = f.post(t, `{"model":"batch"}`)
	require.Equal(t, http.StatusOK, status)
	resp, err := pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, b.addr(), resp.Endpoint)
}

func TestStaleFallbackIsCounted(t *testing.T) {
	f := newFixture(t)
	v := newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)
	f.dec.SetClock(func() time.Time { return time.Now().Add(time.Hour) }) // every snapshot is now stale
	status, body := f.post(t, `{"model":"chat"}`)
	require.Equal(t, http.StatusOK, status, "stale everywhere: fall back to all, do not refuse")
	resp, err := pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, v.addr(), resp.Endpoint)
	_, metrics := f.get(t, "/metrics")
	require.Contains(t, metrics, `meshllm_picker_stale_picks_total{pool="sim-pool"} 1`)
	require.Contains(t, metrics, `meshllm_picker_picks_total{outcome="stale",strategy="PREFIX_CACHE"} 1`)
}

func TestMetricsAndDebug(t *testing.T) {
	f := newFixture(t)
	v := newVLLM(t, 3, 0.25)
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)
	status, _ := f.post(t, `{"model":"chat"}`)
	require.Equal(t, 200, status)
	status, _ = f.post(t, `{"model":"no-such-model"}`)
	require.Equal(t, 404, status, "a refusal picks no endpoint")
	code, m := f.get(t, "/metrics")
	require.Equal(t, 200, code)
	for _, want := range []string{
		`meshllm_picker_picks_total{outcome="picked",strategy="PREFIX_CACHE"} 1`,
		`meshllm_picker_pick_duration_seconds_count 2`,
		`meshllm_picker_scrape_duration_seconds_count`,
		`meshllm_picker_scrape_errors_total{reason="timeout"} 0`,
		fmt.Sprintf(`meshllm_picker_endpoint_waiting{endpoint=%q,pool="sim-pool"} 3`, v.addr()),
		fmt.Sprintf(`meshllm_picker_endpoint_kv_cache_usage{endpoint=%q,pool="sim-pool"} 0.25`, v.addr()),
		fmt.Sprintf(`meshllm_picker_endpoint_eligible{endpoint=%q,pool="sim-pool"} 1`, v.addr()),
		fmt.Sprintf(`meshllm_picker_endpoint_picks_total{endpoint=%q,pool="sim-pool"} 1`, v.addr()),
	} {
		require.Contains(t, m, want)
	}
	code, d := f.get(t, "/debug/state")
	require.Equal(t, 200, code)
	var state struct {
		Ready bool `json:"ready"`
		Pools []struct {
			Name      string `json:"name"`
			Strategy  string `json:"strategy"`
			Endpoints []struct {
				Address   string  `json:"address"`
				Waiting   float64 `json:"waiting"`
				Engine    string  `json:"engine"`
				ScrapedAs string  `json:"scraped_as"`
			} `json:"endpoints"`
			Models []struct {
				ModelName string `json:"model_name"`
			} `json:"models"`
		} `json:"pools"`
	}
	require.NoError(t, json.NewDecoder(bytes.NewReader([]byte(d))).Decode(&state))
	require.True(t, state.Ready)
	require.Equal(t, "sim-pool", state.Pools[0].Name)
	require.Equal(t, v.addr(), state.Pools[0].Endpoints[0].Address)
	require.Equal(t, 3.0, state.Pools[0].Endpoints[0].Waiting)
	require.Equal(t, "auto", state.Pools[0].Endpoints[0].Engine, "no annotation, no --engine: detected")
	require.Equal(t, "vllm", state.Pools[0].Endpoints[0].ScrapedAs)
	require.Len(t, state.Pools[0].Models, 3)

	// Endpoint gauges follow the endpoint set: gone endpoints disappear.
	f.store.SetEndpoints("sim-pool", nil)
	_, m = f.get(t, "/metrics")
	require.NotContains(t, m, v.addr())
}

func TestObjectivesRewritesAndConflictsInPicksAndDebug(t *testing.T) {
	f := newFixture(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "objectives.yaml"))
	require.NoError(t, err)
	extra, err := inference.ParseYAML(b)
	require.NoError(t, err)
	for _, o := range extra.Objectives {
		f.store.SetObjective(o)
	}
	for _, r := range extra.Rewrites {
		f.store.SetRewrite(r)
	}
	v := newVLLM(t, 10, 0.2) // busy: past Sheddable's queue 5
	f.store.SetEndpoints("sim-pool", []string{v.addr()})
	f.waitReady(t, 1)

	status, body := f.post(t, `{"model":"legacy-chat"}`)
	require.Equal(t, 200, status, string(body))
	resp, err := pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, "chat-lora-stable", resp.TargetModel)

	status, body = f.post(t, `{"model":"base-model","objective":"batch-sheddable"}`)
	require.Equal(t, 429, status, "the objective's priority -1 beats the InferenceModel's Critical")
	var refusal struct {
		Error struct{ Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &refusal))
	require.Contains(t, refusal.Error.Message, `Sheddable (InferenceObjective "batch-sheddable", priority -1) requests are shed`)
	status, _ = f.post(t, `{"model":"batch","objective":"premium"}`)
	require.Equal(t, 200, status, "and priority 100 beats Sheddable")
	status, _ = f.post(t, `{"model":"batch"}`)
	require.Equal(t, 429, status)

	_, d := f.get(t, "/debug/state")
	var state struct {
		Pools []struct {
			Rewrites []struct {
				Model   string           `json:"model"`
				Rewrite string           `json:"rewrite"`
				Targets map[string]int32 `json:"targets"`
			} `json:"rewrites"`
			Objectives []struct {
				Name        string `json:"name"`
				Priority    int32  `json:"priority"`
				Criticality string `json:"criticality"`
			} `json:"objectives"`
			Conflicts []string `json:"conflicts"`
		} `json:"pools"`
	}
	require.NoError(t, json.Unmarshal([]byte(d), &state))
	p := state.Pools[0]
	require.Len(t, p.Rewrites, 2)
	require.Equal(t, "legacy-chat", p.Rewrites[0].Model)
	require.Equal(t, map[string]int32{"summarize-lora-v1": 90, "summarize-lora-v2": 10}, p.Rewrites[1].Targets)
	require.Len(t, p.Objectives, 2)
	require.Equal(t, "batch-sheddable", p.Objectives[0].Name)
	require.Equal(t, "Sheddable", p.Objectives[0].Criticality)
	require.Equal(t, "Critical", p.Objectives[1].Criticality)
	require.Len(t, p.Conflicts, 3, "the three InferenceModels declaring a criticality yield to objectives")
	require.Contains(t, p.Conflicts[0], "an objective's priority wins")
}

func mustScheduler() *scheduling.Scheduler {
	s, err := scheduling.New(scheduling.DefaultConfig())
	if err != nil {
		panic(err)
	}
	return s
}

// A pick that asks is explained in its answer and kept in /debug/picks
// (with one pick in scheduling.Config.DebugPicksEvery), newest first, with
// each candidate's scores.
func TestExplainedPicks(t *testing.T) {
	f := newFixture(t)
	busy, calm := newVLLM(t, 4, 0.7), newVLLM(t, 0, 0.1)
	f.store.SetEndpoints("sim-pool", []string{busy.addr(), calm.addr()})
	f.waitReady(t, 2)
	status, body := f.post(t, `{"model":"chat"}`)
	require.Equal(t, http.StatusOK, status)
	resp, err := pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.Equal(t, pickapi.APILevel, resp.APILevel, "every answer says what the picker reads")
	require.Empty(t, resp.Explain, "not asked")

	status, body = f.post(t, `{"model":"chat","explain":true,"max_tokens":64}`)
	require.Equal(t, http.StatusOK, status, string(body))
	resp, err = pickapi.ParsePickResponse(body)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp.Explain, "PREFIX_CACHE "+calm.addr()+" total="), resp.Explain)
	require.Contains(t, resp.Explain, "; "+busy.addr()+" total=")

	code, d := f.get(t, "/debug/picks?n=1")
	require.Equal(t, 200, code)
	var picks struct {
		Picks []struct {
			PickID     uint64             `json:"pick_id"`
			Strategy   string             `json:"strategy"`
			MaxTokens  int                `json:"max_tokens"`
			Weights    map[string]float64 `json:"weights"`
			Candidates []struct {
				Endpoint string             `json:"endpoint"`
				Chosen   bool               `json:"chosen"`
				Scores   map[string]float64 `json:"scores"`
				Waiting  float64            `json:"waiting"`
			} `json:"candidates"`
		} `json:"picks"`
	}
	require.NoError(t, json.Unmarshal([]byte(d), &picks), d)
	require.Len(t, picks.Picks, 1)
	p := picks.Picks[0]
	require.Equal(t, resp.PickID, p.PickID)
	require.Equal(t, "PREFIX_CACHE", p.Strategy)
	require.Equal(t, 64, p.MaxTokens)
	require.Equal(t, 5.0, p.Weights["prefix"])
	require.Len(t, p.Candidates, 2)
	require.Equal(t, calm.addr(), p.Candidates[0].Endpoint)
	require.True(t, p.Candidates[0].Chosen)
	require.False(t, p.Candidates[1].Chosen)
	require.Equal(t, 4.0, p.Candidates[1].Waiting)
	require.Less(t, p.Candidates[1].Scores["queue"], p.Candidates[0].Scores["queue"])

	status, _ = f.post(t, `{"model":"chat","explain":true}`)
	require.Equal(t, http.StatusOK, status)
	_, d = f.get(t, "/debug/picks")
	require.NoError(t, json.Unmarshal([]byte(d), &picks))
	require.Len(t, picks.Picks, 2)
	require.Greater(t, picks.Picks[0].PickID, picks.Picks[1].PickID, "newest first")
	code, _ = f.get(t, "/debug/picks?n=many")
	require.Equal(t, http.StatusBadRequest, code)
}
