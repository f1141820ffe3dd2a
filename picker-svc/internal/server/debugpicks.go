package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/meshllm/meshllm/picker-svc/internal/scheduling"
)

// The recent picks, explained: for each, every candidate the profile
// scored (the best scheduling.MaxExplained), its score from each scorer,
// its total and, with LATENCY, its predicted time to first token and the
// recompute it risked. GET /debug/picks?n=10 keeps the newest n.

type debugPicks struct {
	Picks []debugPick `json:"picks"`
}

type debugPick struct {
	At           time.Time          `json:"at"`
	PickID       uint64             `json:"pick_id"`
	Strategy     string             `json:"strategy"`
	Model        string             `json:"model"`
	PromptTokens int                `json:"prompt_tokens"`
	MaxTokens    int                `json:"max_tokens,omitempty"`
	Eligible     int                `json:"eligible"`
	Judged       int                `json:"judged"`
	Regime       string             `json:"regime,omitempty"`
	KVDemand     float64            `json:"kv_demand,omitempty"`
	Staggered    bool               `json:"staggered,omitempty"`
	Weights      map[string]float64 `json:"weights"`
	Candidates   []debugCandidate   `json:"candidates"`
}

type debugCandidate struct {
	Endpoint  string             `json:"endpoint"`
	Chosen    bool               `json:"chosen,omitempty"`
	Total     float64            `json:"total"`
	Scores    map[string]float64 `json:"scores"`
	TTFTMs    *float64           `json:"predicted_ttft_ms,omitempty"`
	RecompMs  *float64           `json:"predicted_recompute_ms,omitempty"`
	Waiting   float64            `json:"waiting"`
	Running   float64            `json:"running"`
	KVCache   float64            `json:"kv_cache_usage"`
	Unscraped int                `json:"unscraped_picks"`
}

func (s *Server) debugPicks(w http.ResponseWriter, r *http.Request) {
	picks := s.decider.RecentPicks()
	if v := r.URL.Query().Get("n"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "n must be a count, got "+strconv.Quote(v), http.StatusBadRequest)
			return
		}
		picks = picks[:min(n, len(picks))]
	}
	out := debugPicks{Picks: make([]debugPick, 0, len(picks))}
	for _, e := range picks {
		out.Picks = append(out.Picks, explained(e))
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func explained(e *scheduling.Explanation) debugPick {
	p := debugPick{At: e.At, PickID: e.PickID, Strategy: string(e.Strategy), Model: e.Model, PromptTokens: e.PromptTokens,
		MaxTokens: e.MaxTokens, Eligible: e.Eligible, Judged: e.Judged, Regime: e.Regime, KVDemand: e.KVDemand, Staggered: e.Staggered, Weights: map[string]float64{}}
	for _, ws := range e.Scorers {
		p.Weights[ws.Name] = ws.Weight
	}
	ms := func(sec float64) *float64 {
		if sec <= 0 {
			return nil
		}
		v := sec * 1e3
		return &v
	}
	for i, c := range e.Candidates {
		dc := debugCandidate{Endpoint: c.EP.Addr, Chosen: i == 0, Total: c.Total, Scores: map[string]float64{},
			TTFTMs: ms(c.PredictedTTFT), RecompMs: ms(c.PredictedRecompute),
			Waiting: c.Waiting, Running: c.Running, KVCache: c.KVCacheUsage, Unscraped: c.Unscraped}
		for j, ws := range e.Scorers {
			dc.Scores[ws.Name] = c.Scores[j]
		}
		p.Candidates = append(p.Candidates, dc)
	}
	return p
}
