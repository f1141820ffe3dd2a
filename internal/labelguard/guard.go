package labelguard

import (
	"errors"
	"math/rand/v2"
)

// Guard bounds the label sets of the model-labelled metrics. An unbounded
// model label is a denial-of-service vector: every new value is a new stat in
// Envoy, kept for the life of the process.
//
// With an allowlist, values not on it become Other. Either way at most Limit
// distinct (model, target_model) pairs are admitted, first come first served;
// later pairs become (Other, Other). A metric family therefore has at most
// Limit+1 label sets (times the bounded response classes).
//
// Envoy runs one VM per worker thread and all of them write to one stats
// store, so the admitted set is the proxy's, not the VM's: it lives in shared
// data (Shared) and grows only by compare-and-swap. Every pair a VM labels a
// stat with is in its cache, every cache entry was read from or written to
// the shared set, and a write that would take the set past Limit is never
// made. So, whatever the interleaving of the VMs, the proxy defines at most
// Limit pairs plus (Other, Other). (Plugins with different limits under one
// vm_id share the set: the largest limit is then the bound.)
//
// Cost: a pair the VM has seen is a map lookup (no host call, no
// allocation). A new pair re-reads the shared set (at most about 19 KiB at
// the default limit), decodes only the entries added since this VM last read
// it, and, if there is room, writes it back with one entry more. Once a read
// shows the set full, the VM stops reading: the set never shrinks, so every
// later new pair is Other at the cost of a lookup.
//
// When the shared data cannot be used the Guard errs towards Other, never
// past the bound:
//   - a read or write fails (the host has no shared data, say): Unavailable;
//     this request is Other, and a later new pair tries again;
//   - the shared value is not an encoded set (a foreign or corrupt value):
//     Unavailable, and the VM admits nothing new from then on (pairs it
//     already admitted keep their labels);
//   - compare-and-swap fails CASAttempts times in a row (other VMs admitting
//     at the same moment; each failure means another VM's write succeeded):
//     Contended; this request is Other, a later one may be admitted.
//
// One window is left open by the ABI: proxy-wasm cannot create a key
// atomically (cpp-host SharedData::set ignores the CAS of a key that does not
// exist yet), so two VMs creating the set at the same moment, one of them
// already admitting, could lose an entry and let the proxy pass the bound by
// that entry (a VM still stops at limit pairs it knows). Start creates the
// set when a plugin starts, and Envoy starts and configures a canary copy of
// the plugin on the main thread before any worker VM exists (cpp-host
// src/wasm.cc, createWasm / WasmHandleBase::canary), so workers find it in
// place and only ever write with a CAS.
type Guard struct {
	limit  int
	allow  map[string]bool
	shared Shared

	// cache holds the entries (AppendLabelPair) known to be in the shared
	// set, at most limit of them.
	cache map[string]struct{}
	// full: the shared set was seen holding limit pairs (or is unusable).
	full    bool
	corrupt bool
	key     []byte // scratch for the entry of the pair being looked up
	next    []byte // scratch for the value being written

	// The set as last read: its nonce, and how many bytes and entries of it
	// are merged into the cache.
	seen      bool
	seenNonce uint64
	seenLen   int
	seenN     int
}

// Shared is the proxy-wide store of the admitted set: one proxy-wasm shared
// data key (filter/metrics.go implements it on the host).
type Shared interface {
	// Get returns the value and its CAS; found is false when the key has no
	// value. Guard keeps no reference to the returned slice.
	Get() (value []byte, cas uint32, found bool, err error)
	// Set stores value if the key's CAS is still cas (0: unconditionally);
	// ErrCasMismatch when another VM wrote since cas was read.
	Set(value []byte, cas uint32) error
}

// ErrCasMismatch is Shared.Set's answer to a stale CAS (the ABI's
// CasMismatch).
var ErrCasMismatch = errors.New("labelguard: shared data CAS mismatch")

// CASAttempts bounds the read-and-write rounds one new pair may take.
const CASAttempts = 8

// Verdict says how a request's labels were decided.
type Verdict uint8

// Verdicts.
const (
	Kept        Verdict = iota // the request's own (sanitised) values
	Replaced                   // a value off the allowlist became Other; the pair is admitted
	OverLimit                  // the proxy admitted limit pairs already: (Other, Other)
	Contended                  // CAS kept failing: (Other, Other) this time
	Unavailable                // shared data unusable: (Other, Other)
)

// Overflow reports whether a value was replaced by Other.
func (v Verdict) Overflow() bool { return v != Kept }

// NewGuard returns a Guard admitting at most limit pairs into shared;
// allowlist may be nil.
func NewGuard(limit int, allowlist []string, shared Shared) *Guard {
	g := &Guard{limit: limit, shared: shared, cache: make(map[string]struct{})}
	if len(allowlist) > 0 {
		g.allow = make(map[string]bool, len(allowlist))
		for _, m := range allowlist {
			g.allow[TagValue(m)] = true
		}
	}
	return g
}

// Start creates the shared set if no VM has yet, and reads it. An error is
// not fatal: new pairs are Other until the shared data works.
func (g *Guard) Start() error {
	_, _, found, err := g.shared.Get()
	if err != nil || found {
		return err
	}
	return g.shared.Set(EmptyLabelSet(rand.Uint64()), 0)
}

// Labels returns the label values to use for a request's model and target
// model, and how they were decided.
func (g *Guard) Labels(model, target string) (string, string, Verdict) {
	m, t := TagValue(model), TagValue(target)
	v := Kept
	if g.allow != nil {
		if !g.allow[m] {
			m, v = Other, Replaced
		}
		if !g.allow[t] {
			t, v = Other, Replaced
		}
	}
	if m == Other && t == Other {
		return Other, Other, v // the overflow series: always allowed, never an entry
	}
	g.key = AppendLabelPair(g.key[:0], m, t)
	if _, ok := g.cache[string(g.key)]; ok {
		return m, t, v
	}
	if g.full {
		if g.corrupt {
			return Other, Other, Unavailable
		}
		return Other, Other, OverLimit
	}
	if w := g.admit(); w != Kept {
		return Other, Other, w
	}
	return m, t, v
}

// admit finds g.key in the shared set or adds it there: Kept when the pair
// is in the set (and the cache) on return.
func (g *Guard) admit() Verdict {
	for range CASAttempts {
		value, cas, found, err := g.shared.Get()
		if err != nil {
			return Unavailable
		}
		if !found {
			// Gone or never created (Start failed): create it. Not atomic,
			// see the type's comment; then read it back for a CAS.
			if g.shared.Set(EmptyLabelSet(rand.Uint64()), 0) != nil {
				return Unavailable
			}
			continue
		}
		inSet, n, err := g.merge(value)
		if err != nil {
			g.full, g.corrupt = true, true
			return Unavailable
		}
		if inSet {
			return Kept
		}
		// A VM that knows limit pairs is full even if the set says fewer
		// (it could, only after the creation window below): those pairs
		// may already label stats.
		if n >= g.limit || len(g.cache) >= g.limit {
			g.full = true
			return OverLimit
		}
		g.next = append(append(g.next[:0], value...), g.key...)
		switch err := g.shared.Set(g.next, cas); {
		case err == nil:
			g.cache[string(g.key)] = struct{}{}                  // len(g.cache) < g.limit: checked above
			g.seenLen, g.seenN = g.seenLen+len(g.key), g.seenN+1 // the set is now g.next
			return Kept
		case !errors.Is(err, ErrCasMismatch):
			return Unavailable
		}
	}
	return Contended
}

// merge adds the entries of an encoded set to the cache (up to limit) and
// reports whether g.key is among them, and how many entries the set has.
// Entries merged from an earlier read of the same set (same nonce, and it
// can only have grown) are not decoded again: g.key is not among them, or it
// would be in the cache (which drops entries only once it holds limit, when
// admit stops anyway).
func (g *Guard) merge(value []byte) (inSet bool, n int, err error) {
	nonce, entries, err := SplitLabelSet(value)
	if err != nil {
		return false, 0, err
	}
	from := 0
	if g.seen && nonce == g.seenNonce && len(entries) >= g.seenLen {
		from, n = g.seenLen, g.seenN
	}
	added, err := DecodeLabelEntries(entries[from:], func(entry, _, _ []byte) bool {
		if string(entry) == string(g.key) {
			inSet = true
		}
		if _, ok := g.cache[string(entry)]; !ok && len(g.cache) < g.limit {
			g.cache[string(entry)] = struct{}{}
		}
		return true
	})
	if err != nil {
		return false, 0, err
	}
	g.seen, g.seenNonce, g.seenLen, g.seenN = true, nonce, len(entries), n+added
	return inSet, n + added, nil
}

// Admitted is the number of distinct label pairs this VM knows admitted.
func (g *Guard) Admitted() int { return len(g.cache) }

// Corrupt reports whether the shared value was found unreadable.
func (g *Guard) Corrupt() bool { return g.corrupt }
