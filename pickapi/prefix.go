package pickapi

// Prefix hashing: the one reference implementation that the filter (which
// computes hashes) and the picker (which indexes them) share.
//
// The prompt is cut into blocks of BlockSize bytes (64 bytes is about 16
// tokens, a vLLM KV block); only full blocks are hashed, at most MaxBlocks.
// Block i's hash covers the model and every byte of blocks 0..i (a chain:
// h(i) = FNV-1a-64 over h(i-1) as 8 little-endian bytes followed by block i;
// h(-1) = FNV-1a-64 of the model name), so equal hashes mean equal prefixes.
//
// The filter feeds the raw JSON text of the request's "messages" (chat) or
// "prompt" (completions) value. Two requests that share a system prompt
// therefore share the hashes of every block before their first difference.

// BlockSize is the number of prompt bytes per prefix block.
const BlockSize = 64

// MaxBlocks bounds the hashes of one request (1,024 blocks = 64 KiB of prompt,
// about 16k tokens: long system prompts are common, and a match the hashes do
// not reach is a saving the picker cannot weigh).
const MaxBlocks = 1024

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// PrefixHashes appends the hash chain of prompt's full blocks to dst.
func PrefixHashes(dst []uint64, model string, prompt []byte) []uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(model); i++ {
		h ^= uint64(model[i])
		h *= fnvPrime64
	}
	for n := 0; n < MaxBlocks && (n+1)*BlockSize <= len(prompt); n++ {
		prev := h
		h = fnvOffset64
		for s := 0; s < 64; s += 8 {
			h ^= (prev >> s) & 0xff
			h *= fnvPrime64
		}
		for _, c := range prompt[n*BlockSize : (n+1)*BlockSize] {
			h ^= uint64(c)
			h *= fnvPrime64
		}
		dst = append(dst, h)
	}
	return dst
}
