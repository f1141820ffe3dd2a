package vllmsim

import (
	"encoding/binary"
	"strings"
)

// The tokenizer approximation. A prompt is bytes; every 4 bytes (the last
// token may be shorter) are one token, which is close to the ~4 characters
// per token of BPE tokenizers on English text, deterministic, and free of
// any vocabulary. A token's id is its 4 bytes read as a little-endian
// uint32 (a short last token is padded with zero bytes), so text and ids
// convert both ways and token-id prompts follow the same rules. Because a
// token is exactly 4 bytes, a KV block of 16 tokens is 64 bytes of prompt:
// the same blocks the picker's prefix hashes cover (pickapi.BlockSize), so
// prefix-aware routing sees what this server caches.

const bytesPerToken = 4

// maxTokenID is the largest id of the simulated vocabulary (every 4-byte
// string is a token).
const maxTokenID = 1<<32 - 1

// countTokens is the number of tokens in n bytes of text.
func countTokens(n int) int { return (n + bytesPerToken - 1) / bytesPerToken }

// tokenize returns the token ids of a prompt: the ids /tokenize answers,
// the engine hashes into prefix-cache blocks and KV events carry.
func tokenize(prompt []byte) []uint32 {
	ids := make([]uint32, countTokens(len(prompt)))
	for i := range ids {
		var b [bytesPerToken]byte
		copy(b[:], prompt[i*bytesPerToken:])
		ids[i] = binary.LittleEndian.Uint32(b[:])
	}
	return ids
}

// tokenText is the text of one token: its 4 bytes without the zero bytes
// that pad a short last token.
func tokenText(id uint32) string {
	b := binary.LittleEndian.AppendUint32(nil, id)
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

// detokenize is the text of token ids, the inverse of tokenize.
func detokenize(ids []uint32) string {
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(tokenText(id))
	}
	return sb.String()
}

// idsToBytes turns token ids into the byte form prompts are carried in.
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

// chatTemplate holds the chat-template options vLLM's chat requests take.
type chatTemplate struct {
	// addGenerationPrompt appends the assistant's turn opener (default on).
	addGenerationPrompt bool
	// continueFinalMessage leaves the last message open for the model to
	// continue (no newline after it, no generation prompt).
	continueFinalMessage bool
}

var defaultChatTemplate = chatTemplate{addGenerationPrompt: true}

// renderChat applies a fixed chat template: "<|role|>\n" content "\n" per
// message, then the generation prompt "<|assistant|>\n". Real templates
// differ per model; what matters here is that it is deterministic and that
// a shared conversation prefix renders to a shared text prefix.
func renderChat(msgs []chatMessage, t chatTemplate) []byte {
	var sb strings.Builder
	for i, m := range msgs {
		sb.WriteString("<|")
		sb.WriteString(m.Role)
		sb.WriteString("|>\n")
		sb.WriteString(m.Content)
		if t.continueFinalMessage && i == len(msgs)-1 {
			return []byte(sb.String())
		}
		sb.WriteString("\n")
	}
	if t.addGenerationPrompt {
		sb.WriteString("<|assistant|>\n")
	}
	return []byte(sb.String())
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// blockHashes returns the hash chain of the prompt's full blocks: block i's
// hash covers the model or adapter name (vLLM keys adapters apart) and
// every token of blocks 0..i. A block is full when it holds blockSize tokens.
func blockHashes(name string, ids []uint32, blockSize int) []uint64 {
	nblocks := len(ids) / blockSize
	if nblocks == 0 {
		return nil
	}
	out := make([]uint64, nblocks)
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint64(name[i])) * fnvPrime
	}
	for i := 0; i < nblocks; i++ {
		prev := h
		h = fnvOffset
		for s := 0; s < 64; s += 8 {
			h = (h ^ (prev>>s)&0xff) * fnvPrime
		}
		for _, id := range ids[i*blockSize : (i+1)*blockSize] {
			for s := 0; s < 32; s += 8 {
				h = (h ^ uint64(id>>s)&0xff) * fnvPrime
			}
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
