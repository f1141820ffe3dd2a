package scheduling

import (
	"fmt"
	"math"
	"slices"
)

// ProfileSpec is a profile as data: plugin names in the order they run.
type ProfileSpec struct {
	// Prepare plugins add per-pick data to candidates (in_flight).
	Prepare []string `json:"prepare,omitempty"`
	Filters []string `json:"filters,omitempty"`
	// Scorers and their weights; a weight of 0 disables a scorer.
	Scorers []WeightedScorer `json:"scorers"`
	// Picker chooses among the scored candidates ("" is max_score).
	Picker string `json:"picker,omitempty"`
}

// WeightedScorer names a scorer and its weight in a profile.
type WeightedScorer struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
}

// Weight returns the weight of scorer name in p (0 when absent).
func (p ProfileSpec) Weight(name string) float64 {
	for _, s := range p.Scorers {
		if s.Name == name {
			return s.Weight
		}
	}
	return 0
}

// WithWeight returns p with scorer name weighted w (added if absent).
func (p ProfileSpec) WithWeight(name string, w float64) ProfileSpec {
	out := p
	out.Scorers = append([]WeightedScorer(nil), p.Scorers...)
	for i := range out.Scorers {
		if out.Scorers[i].Name == name {
			out.Scorers[i].Weight = w
			return out
		}
	}
	out.Scorers = append(out.Scorers, WeightedScorer{name, w})
	return out
}

// after is a Prepare plugin that reads what others write in the same pick:
// they must run before it.
type after interface {
	After() []string
}

type weighted struct {
	s Scorer
	w float64
}

// profile is a ProfileSpec with its plugins resolved.
type profile struct {
	fetchers    []Fetcher // prepare's plugins that do I/O, run before all of prepare
	prepare     []Preparer
	filters     []Filter
	scorers     []weighted
	picker      Picker
	postPickers []PostPicker
	// specScorers names scorers (with their weights), as explanations
	// show them.
	specScorers []WeightedScorer
}

// names lists every plugin name spec uses.
func (p ProfileSpec) names() []string {
	out := append(append([]string(nil), p.Prepare...), p.Filters...)
	for _, s := range p.Scorers {
		out = append(out, s.Name)
	}
	if p.Picker != "" {
		out = append(out, p.Picker)
	}
	return out
}

// resolve builds spec from instances (one per plugin name, shared by every
// profile so that stateful plugins keep one state).
func (p ProfileSpec) resolve(instances map[string]Plugin) (*profile, error) {
	out := &profile{}
	seen := map[Plugin]bool{}
	hook := func(pl Plugin) {
		if pp, ok := pl.(PostPicker); ok && !seen[pl] {
			out.postPickers = append(out.postPickers, pp)
		}
		seen[pl] = true
	}
	for i, n := range p.Prepare {
		pr, ok := instances[n].(Preparer)
		if !ok {
			return nil, fmt.Errorf("prepare: %q is not a Prepare plugin", n)
		}
		if a, ok := pr.(after); ok {
			for _, need := range a.After() {
				if !slices.Contains(p.Prepare[:i], need) {
					return nil, fmt.Errorf("prepare: %q reads what %q writes: list %q before it", n, need, need)
				}
			}
		}
		out.prepare = append(out.prepare, pr)
		if f, ok := pr.(Fetcher); ok {
			out.fetchers = append(out.fetchers, f)
		}
		hook(pr)
	}
	for _, n := range p.Filters {
		f, ok := instances[n].(Filter)
		if !ok {
			return nil, fmt.Errorf("filters: %q is not a filter", n)
		}
		out.filters = append(out.filters, f)
		hook(f)
	}
	for _, ws := range p.Scorers {
		s, ok := instances[ws.Name].(Scorer)
		if !ok {
			return nil, fmt.Errorf("scorers: %q is not a scorer", ws.Name)
		}
		if !(ws.Weight >= 0 && ws.Weight < 1e6) || math.IsNaN(ws.Weight) {
			return nil, fmt.Errorf("scorers: weight of %q is %v, want [0, 1e6)", ws.Name, ws.Weight)
		}
		if ws.Weight > 0 {
			if pr, ok := s.(Preparer); ok && !slices.Contains(out.prepare, pr) {
				return nil, fmt.Errorf("scorers: %q needs its data: list it under prepare too", ws.Name)
			}
			out.scorers = append(out.scorers, weighted{s, ws.Weight})
			out.specScorers = append(out.specScorers, ws)
			hook(s)
		}
	}
	name := p.Picker
	if name == "" {
		name = MaxScorePicker{}.Name()
	}
	pk, ok := instances[name].(Picker)
	if !ok {
		return nil, fmt.Errorf("picker: %q is not a picker", name)
	}
	out.picker = pk
	hook(pk)
	return out, nil
}
