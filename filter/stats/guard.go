package stats

// Guard bounds the label sets of the model-labelled metrics. An unbounded
// model label is a denial-of-service vector: every new value is a new stat in
// Envoy, kept for the life of the process.
//
// With an allowlist, values not on it become Other. Either way at most Limit
// distinct (model, target_model) pairs are admitted, first come first served;
// later pairs become (Other, Other). A metric family therefore has at most
// Limit+1 label sets (times the bounded response classes).
type Guard struct {
	limit    int
	allow    map[string]bool
	admitted map[pair]struct{}
}

type pair struct{ model, target string }

// NewGuard returns a Guard admitting at most limit pairs; allowlist may be nil.
func NewGuard(limit int, allowlist []string) *Guard {
	g := &Guard{limit: limit, admitted: make(map[pair]struct{})}
	if len(allowlist) > 0 {
		g.allow = make(map[string]bool, len(allowlist))
		for _, m := range allowlist {
			g.allow[TagValue(m)] = true
		}
	}
	return g
}

// Labels returns the label values to use for a request's model and target
// model, and whether they were replaced by Other.
func (g *Guard) Labels(model, target string) (string, string, bool) {
	p := pair{TagValue(model), TagValue(target)}
	overflow := false
	if g.allow != nil {
		if !g.allow[p.model] {
			p.model, overflow = Other, true
		}
		if !g.allow[p.target] {
			p.target, overflow = Other, true
		}
	}
	if _, ok := g.admitted[p]; ok {
		return p.model, p.target, overflow
	}
	if len(g.admitted) < g.limit {
		g.admitted[p] = struct{}{}
		return p.model, p.target, overflow
	}
	return Other, Other, true
}

// Admitted is the number of distinct label pairs admitted so far.
func (g *Guard) Admitted() int { return len(g.admitted) }
