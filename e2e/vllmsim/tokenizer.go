package vllmsim

import (
	"encoding/binary"
	"strings"
)

// The tokenizer approximation. A prompt is bytes; every 4 bytes (the last
// token may be shorter) are one token, which is close to the ~4 characters
// per token of BPE tokenizers on English text, deterministic, and free of
// any vocabulary. Token-id prompts become 4 bytes per id, so the same rules
// apply. Because a token is exactly 4 bytes, a KV block of 16 tokens is 64
// bytes of prompt: the same blocks the picker's prefix hashes cover
// (pickapi.BlockSize), so prefix-aware routing sees what this server caches.

const bytesPerToken = 4

// countTokens is the number of tokens in n bytes of text.
func countTokens(n int) int { return (n + bytesPerToken - 1) / bytesPerToken }

// idsToBytes turns token ids into the byte form used for hashing.
func idsToBytes(ids []int64) []byte {
	b := make([]byte, 0, len(ids)*bytesPerToken)
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint32(b, uint32(id))
	}
	return b
}

// chatMessage is one chat turn after decoding.
type chatMessage struct {
	Role    string
	Content string
}

// renderChat applies a fixed chat template: "<|role|>\n" content "\n" per
// message, then the generation prompt "<|assistant|>\n". Real templates
// differ per model; what matters here is that it is deterministic and that
// a shared conversation prefix renders to a shared text prefix.
func renderChat(msgs []chatMessage) []byte {
	var sb strings.Builder
	for _, m := range msgs {
		sb.WriteString("<|")
		sb.WriteString(m.Role)
		sb.WriteString("|>\n")
		sb.WriteString(m.Content)
		sb.WriteString("\n")
	}
	sb.WriteString("<|assistant|>\n")
	return []byte(sb.String())
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// blockHashes returns the hash chain of the prompt's full blocks: block i's
// hash covers the model or adapter name (vLLM keys adapters apart) and every
// byte of blocks 0..i. A block is full when it holds blockSize tokens.
func blockHashes(name string, prompt []byte, blockSize int) []uint64 {
	tokens := countTokens(len(prompt))
	nblocks := tokens / blockSize
	if nblocks == 0 {
		return nil
	}
	out := make([]uint64, nblocks)
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * fnvPrime
	}
	bb := blockSize * bytesPerToken
	for i := 0; i < nblocks; i++ {
		prev := h
		h = fnvOffset
		for s := 0; s < 64; s += 8 {
			h = (h ^ (prev>>s)&0xff) * fnvPrime
		}
		end := min((i+1)*bb, len(prompt))
		for _, c := range prompt[i*bb : end] {
			h = (h ^ uint64(c)) * fnvPrime
		}
		out[i] = h
	}
	return out
}

// fillerWords are the generated "tokens": 4 bytes each, so the generated
// text re-tokenizes to exactly completion_tokens, and JSON-safe, so they can
// be written into a JSON string without escaping.
var fillerWords = [32]string{
	" the", " and", " for", " you", " not", " are", " but", " can",
	" was", " all", " one", " has", " had", " her", " his", " how",
	" may", " new", " now", " old", " our", " out", " see", " two",
	" way", " who", " why", " yes", " yet", " use", " day", " get",
}

// fillerToken is the text of output token k of a request with seed s.
func fillerToken(s uint64, k int) string {
	return fillerWords[(s+uint64(k)*7)%uint64(len(fillerWords))]
}
