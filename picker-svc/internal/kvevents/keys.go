package kvevents

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// The index keys blocks by its own chained hash over token ids, not by the
// engine's hashes: a request's keys can then be computed from its tokens
// alone, whatever hash algorithm and seed the engines use. Key i covers
// the adapter and every token of blocks 0..i: the first block chains from
// the adapter's root, each next one from the key before it.

// rootKey starts the chain of an adapter's blocks ("" is the base model).
func rootKey(lora string) uint64 { return xxhash.Sum64String("meshllm/kvevents\x00" + lora) }

// keyHasher computes chained keys, reusing its buffer.
type keyHasher struct{ buf []byte }

// next is the key of a block of tokens after parent. salt, when not nil,
// keys the block apart from a plain block of the same tokens (the engine
// hashed extra keys into it: a cache salt, multimodal inputs).
func (h *keyHasher) next(parent uint64, tokens []uint32, salt []byte) uint64 {
	b := binary.LittleEndian.AppendUint64(h.buf[:0], parent)
	for _, t := range tokens {
		b = binary.LittleEndian.AppendUint32(b, t)
	}
	if salt != nil {
		b = append(b, 0xff)
		b = append(b, salt...)
	}
	h.buf = b
	return xxhash.Sum64(b)
}

// chain appends to out the keys of tokens' full blocks of blockSize.
func (h *keyHasher) chain(out []uint64, lora string, tokens []uint32, blockSize int) []uint64 {
	k := rootKey(lora)
	for i := 0; (i+1)*blockSize <= len(tokens); i++ {
		k = h.next(k, tokens[i*blockSize:(i+1)*blockSize], nil)
		out = append(out, k)
	}
	return out
}
