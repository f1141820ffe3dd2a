package kvevents

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeBothEncodings(t *testing.T) {
	lora := "sql"
	id := int64(1)
	evs := []tev{
		{kind: BlockStored, hashes: []uint64{1, 1<<64 - 1}, tokens: seqTokens(0, 32), bs: 16, loraID: &id, loraName: &lora, medium: "GPU"},
		{kind: BlockStored, hashes: []uint64{7}, parent: u64(1<<64 - 1), tokens: seqTokens(32, 16), bs: 16, medium: "GPU", extra: []any{nil}},
		{kind: BlockRemoved, hashes: []uint64{7}, medium: "GPU"},
		{kind: AllBlocksCleared},
	}
	for _, enc := range []string{encMap, encArray} {
		b, err := NewDecoder().Decode(payload(enc, evs...))
		require.NoError(t, err, enc)
		assert.Equal(t, 1.5e9, b.TS)
		assert.Equal(t, int64(0), b.DPRank)
		require.Len(t, b.Events, 4)
		e := b.Events[0]
		assert.Equal(t, BlockStored, e.Kind)
		assert.Equal(t, []uint64{1, 1<<64 - 1}, e.Hashes)
		assert.False(t, e.HasParent)
		assert.Equal(t, seqTokens(0, 32), e.Tokens)
		assert.Equal(t, 16, e.BlockSize)
		assert.True(t, e.HasLoRAName)
		assert.Equal(t, "sql", e.LoRAName)
		assert.Equal(t, int64(1), e.LoRAID)
		assert.Equal(t, "GPU", e.Medium)
		assert.Nil(t, e.Extra)
		e = b.Events[1]
		assert.True(t, e.HasParent)
		assert.Equal(t, uint64(1<<64-1), e.Parent)
		assert.Equal(t, [][]byte{nil}, e.Extra)
		assert.False(t, e.HasLoRAName)
		assert.Equal(t, BlockRemoved, b.Events[2].Kind)
		assert.Equal(t, []uint64{7}, b.Events[2].Hashes)
		assert.Equal(t, AllBlocksCleared, b.Events[3].Kind)
	}
}

// TestDecodeVLLMShapes: the shapes vLLM versions have sent.
func TestDecodeVLLMShapes(t *testing.T) {
	toks := seqTokens(100, 16)
	for name, raw := range map[string]any{
		// vLLM 0.9: no medium, no rank.
		"0.9": []any{1.0, []any{[]any{"BlockStored", []any{5}, nil, toks, 16, nil}, []any{"BlockRemoved", []any{5}}}},
		// 0.11+: medium, lora_name; the rank.
		"0.11": []any{1.0, []any{[]any{"BlockStored", []any{5}, nil, toks, 16, nil, "GPU", nil}, []any{"BlockRemoved", []any{5}, "GPU"}}, 0},
		// Later arrays: extra_keys, group_idx, kv_cache_spec_kind and more to come.
		"array-later": []any{1.0, []any{[]any{"BlockStored", []any{5}, nil, toks, 16, nil, "GPU", nil, []any{nil}, 0, "full_attention", nil, "future"}, []any{"BlockRemoved", []any{5}, "GPU", 0}}, 0},
		// Maps (as captured from vLLM 0.26), with a field from the future.
		"map": []any{1.0, []any{
			map[string]any{"type": "BlockStored", "block_hashes": []any{5}, "parent_block_hash": nil, "token_ids": toks, "block_size": 16,
				"lora_id": nil, "medium": "GPU", "lora_name": nil, "extra_keys": []any{nil}, "group_idx": 0, "kv_cache_spec_kind": "full_attention", "new": map[string]any{"x": []any{1}}},
			map[string]any{"block_hashes": []any{5}, "medium": "GPU", "type": "BlockRemoved"}}, 0},
		// The batch itself as a map.
		"batch-map": map[string]any{"ts": 1.0, "data_parallel_rank": 3, "events": []any{
			map[string]any{"type": "BlockStored", "block_hashes": []any{5}, "parent_block_hash": nil, "token_ids": toks, "block_size": 16},
			map[string]any{"type": "BlockRemoved", "block_hashes": []any{5}}}},
	} {
		b, err := NewDecoder().Decode(mustMarshal(raw))
		require.NoError(t, err, name)
		require.Len(t, b.Events, 2, name)
		assert.Equal(t, []uint64{5}, b.Events[0].Hashes, name)
		assert.Equal(t, toks, b.Events[0].Tokens, name)
		assert.Equal(t, BlockRemoved, b.Events[1].Kind, name)
	}
}

func TestDecodeHashForms(t *testing.T) {
	sha := bytes.Repeat([]byte{0xab}, 24)
	sha = append(sha, 1, 2, 3, 4, 5, 6, 7, 8)
	b, err := NewDecoder().Decode(mustMarshal([]any{1.0, []any{[]any{"BlockRemoved", []any{sha, []byte{1, 2}, int64(-1)}}}}))
	require.NoError(t, err)
	assert.Equal(t, []uint64{0x0102030405060708, 0x0102, 1<<64 - 1}, b.Events[0].Hashes,
		"bytes read as vLLM's int conversion (last 8 bytes, big-endian); signed ints as two's complement")
}

func TestDecodeSkipsUnknownEvents(t *testing.T) {
	b, err := NewDecoder().Decode(mustMarshal([]any{1.0, []any{
		[]any{"BlockMoved", []any{1}, map[string]any{"a": 1}},
		map[string]any{"type": "SomethingNew", "x": []any{1, 2}},
		[]any{"AllBlocksCleared"},
	}, 0}))
	require.NoError(t, err)
	assert.Equal(t, 2, b.Unknown)
	require.Len(t, b.Events, 1)
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := payload(encArray, stored(1, nil, seqTokens(0, 32), 16))
	nested := []any{}
	for range 100 {
		nested = []any{nested}
	}
	for name, p := range map[string][]byte{
		"empty":             nil,
		"truncated":         good[:len(good)-3],
		"trailing":          append(bytes.Clone(good), 0xc0),
		"not an array":      mustMarshal("hello"),
		"short batch":       mustMarshal([]any{1.0}),
		"events not list":   mustMarshal([]any{1.0, 5}),
		"ts not a number":   mustMarshal([]any{"x", []any{}}),
		"event not tagged":  mustMarshal([]any{1.0, []any{[]any{5}}}),
		"empty event":       mustMarshal([]any{1.0, []any{[]any{}}}),
		"tokens mismatch":   mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, seqTokens(0, 15), 16, nil, "GPU", nil}}}),
		"no block size":     mustMarshal([]any{1.0, []any{map[string]any{"type": "BlockStored", "block_hashes": []any{1}, "token_ids": seqTokens(0, 16)}}}),
		"zero block size":   mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{}, nil, []any{}, 0}}}),
		"token negative":    mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{-1}, 1}}}),
		"token too big":     mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{int64(1) << 33}, 1}}}),
		"token a string":    mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, []any{"a"}, 1}}}),
		"hash a float":      mustMarshal([]any{1.0, []any{[]any{"BlockRemoved", []any{1.5}}}}),
		"empty hash bytes":  mustMarshal([]any{1.0, []any{[]any{"BlockRemoved", []any{[]byte{}}}}}),
		"extra count":       mustMarshal([]any{1.0, []any{[]any{"BlockStored", []any{1}, nil, seqTokens(0, 1), 1, nil, "GPU", nil, []any{nil, nil}}}}),
		"deep nesting":      mustMarshal([]any{1.0, []any{[]any{"BlockRemoved", []any{}, "GPU", nested}}}),
		"huge array header": {0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge string":       {0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x91, 0xdb, 0xff, 0xff, 0xff, 0xff},
		"map batch no evs":  mustMarshal(map[string]any{"ts": 1.0}),
		"huge ext skipped":  {0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0xc9, 0xff, 0xff, 0xff, 0xff, 1},
		"map key not str":   {0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0x91, 0x81, 0x01, 0x02},
	} {
		_, err := NewDecoder().Decode(p)
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, ErrMalformed), "%s: %v", name, err)
	}
	_, err := NewDecoder().Decode(make([]byte, MaxPayloadBytes+1))
	assert.Error(t, err)
}

func TestDecoderReuse(t *testing.T) {
	dec := NewDecoder()
	a := payload(encMap, stored(1, nil, seqTokens(0, 64), 16))
	b := payload(encArray, stored(9, nil, seqTokens(5, 16), 16))
	for range 3 {
		x, err := dec.Decode(a)
		require.NoError(t, err)
		assert.Len(t, x.Events[0].Hashes, 4)
		_, err = dec.Decode([]byte{0xc1})
		require.Error(t, err)
		y, err := dec.Decode(b)
		require.NoError(t, err)
		assert.Equal(t, seqTokens(5, 16), y.Events[0].Tokens)
	}
}
