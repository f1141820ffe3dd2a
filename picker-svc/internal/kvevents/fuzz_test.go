package kvevents

import (
	"errors"
	"testing"
)

// FuzzDecodeBatch: any payload decodes to a consistent Batch or to an
// ErrMalformed error; never a panic. A decoded batch also applies to an
// index without breaking its bounds.
func FuzzDecodeBatch(f *testing.F) {
	lora := "sql"
	id := int64(2)
	for _, enc := range []string{encMap, encArray} {
		f.Add(payload(enc, stored(1, nil, seqTokens(0, 32), 16), stored(3, u64(2), seqTokens(32, 16), 16)))
		f.Add(payload(enc, tev{kind: BlockStored, hashes: []uint64{5}, tokens: seqTokens(0, 4), bs: 4, loraID: &id, loraName: &lora, medium: "GPU", extra: []any{[]any{"sql"}}}))
		f.Add(payload(enc, tev{kind: BlockRemoved, hashes: []uint64{1, 2}, medium: "CPU"}, tev{kind: AllBlocksCleared}))
	}
	f.Add(mustMarshal(map[string]any{"ts": 1.0, "events": []any{map[string]any{"type": "BlockRemoved", "block_hashes": []any{[]byte{1, 2, 3}}}}}))
	f.Add(mustMarshal([]any{1.0, []any{[]any{"Unknown", 1}}, nil}))
	f.Add([]byte{0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	dec := NewDecoder()
	ix := New(Config{MaxBlocksPerPod: 64, MaxBlocks: 128})
	_ = ix.Restarted("p")
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := dec.Decode(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		for _, e := range b.Events {
			if e.Kind == BlockStored && len(e.Tokens) != len(e.Hashes)*e.BlockSize {
				t.Fatalf("BlockStored with %d tokens for %d blocks of %d", len(e.Tokens), len(e.Hashes), e.BlockSize)
			}
			if e.Extra != nil && len(e.Extra) != len(e.Hashes) {
				t.Fatalf("%d extra keys for %d blocks", len(e.Extra), len(e.Hashes))
			}
		}
		if err := ix.Apply("p", b); err != nil {
			t.Fatal(err)
		}
		if st := ix.Stats(); st.Blocks > 128 {
			t.Fatalf("index over its bound: %d blocks", st.Blocks)
		}
	})
}
