package kvevents

import (
	"github.com/vmihailenco/msgpack/v5"
)

// Test payloads, built with a generic msgpack encoder from vLLM's field
// lists (vllm/distributed/kv_events.py), independently of any encoder the
// simulator has.

type tev struct {
	kind     Kind
	hashes   []uint64
	parent   *uint64
	tokens   []uint32
	bs       int
	loraID   *int64
	loraName *string
	medium   string // "" encodes nil
	extra    []any  // nil: the field is left out
	group    int64
}

const (
	encMap   = "map"
	encArray = "array"
)

func optional[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func (e tev) array() []any {
	med := any(nil)
	if e.medium != "" {
		med = e.medium
	}
	switch e.kind {
	case BlockStored:
		a := []any{"BlockStored", e.hashes, optional(e.parent), e.tokens, e.bs, optional(e.loraID), med, optional(e.loraName)}
		if e.extra != nil {
			a = append(a, e.extra, e.group, "full_attention")
		}
		return a
	case BlockRemoved:
		return []any{"BlockRemoved", e.hashes, med}
	}
	return []any{"AllBlocksCleared"}
}

func (e tev) mapped() map[string]any {
	a := e.array()
	names := append([]string{"type"}, positional[e.kind]...)
	m := map[string]any{}
	for i, v := range a {
		m[names[i]] = v
	}
	return m
}

// payload encodes a batch [ts, events, rank] in one encoding.
func payload(enc string, evs ...tev) []byte {
	var events []any
	for _, e := range evs {
		if enc == encMap {
			events = append(events, e.mapped())
		} else {
			events = append(events, e.array())
		}
	}
	b, err := msgpack.Marshal([]any{1.5e9, events, 0})
	if err != nil {
		panic(err)
	}
	return b
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func u64(v uint64) *uint64 { return &v }
func str(s string) *string { return &s }

// seq returns n token ids from start.
func seqTokens(start, n int) []uint32 {
	t := make([]uint32, n)
	for i := range t {
		t[i] = uint32(start + i)
	}
	return t
}

// stored is a BlockStored of consecutive blocks with engine hashes h0, h0+1, ...
func stored(h0 uint64, parent *uint64, tokens []uint32, bs int) tev {
	n := len(tokens) / bs
	hs := make([]uint64, n)
	for i := range hs {
		hs[i] = h0 + uint64(i)
	}
	return tev{kind: BlockStored, hashes: hs, parent: parent, tokens: tokens, bs: bs, medium: "GPU"}
}
