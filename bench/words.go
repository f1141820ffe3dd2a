package bench

import (
	"math/rand/v2"
	"strings"
)

// Prompts are made of words with no tokenizer. Every word is three lower-case
// letters and is written with a leading space, so a word is exactly 4 bytes:
// vllmsim counts 4 bytes a token (e2e/vllmsim/tokenizer.go), so n words are
// exactly n tokens there. Each word was kept only if " w" and "w" are one
// token each in the Llama-2 (SentencePiece), Llama-3 and Qwen2.5/Qwen3 (BPE)
// tokenizers, so a real vLLM counts close to n as well (docs/bench.md says
// how close, measured, and how). A prompt drops its first byte (a space): a
// prompt of n words is 4n-1 bytes, still n tokens for vllmsim, and it keeps
// SentencePiece from spending a token on a leading space.
var words = [...]string{
	"the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was", "one", "our", "out",
	"day", "get", "has", "him", "his", "how", "man", "new", "now", "old", "see", "two", "way", "who", "boy", "did",
	"its", "let", "put", "say", "she", "too", "use", "act", "add", "age", "ago", "aid", "aim", "air", "art", "ask",
	"bad", "bag", "bar", "bed", "big", "bit", "box", "bus", "buy", "car", "cat", "cut", "dog", "dry", "due", "eat",
	"egg", "end", "eye", "far", "fat", "few", "fit", "fly", "fun", "gas", "hat", "hit", "hot", "ice", "ill", "job",
	"key", "kid", "lay", "leg", "lie", "lot", "low", "map", "may", "mix", "net", "nor", "odd", "off", "oil", "own",
	"pay", "per", "pen", "pop", "raw", "red", "rid", "row", "run", "sad", "sea", "set", "sit", "six", "sky", "son",
	"sun", "tax", "tea", "ten", "tie", "tip", "top", "toy", "try", "war", "web", "why", "win", "yes", "yet", "bay",
	"bet", "bid", "bin", "bow", "cap", "cow", "cry", "cup", "dad", "die", "dig", "dot", "ear", "fan", "fee", "fix",
	"gap", "hey", "hip", "joy", "lab", "lap", "law", "lip", "mad", "mom", "nod", "nut", "pan", "pet", "pie", "pig",
	"pin", "pit", "pot", "rat", "ray", "rib", "rod", "rub", "ski", "spy", "sum", "tag", "tap", "ton", "van", "via",
	"arm", "bat", "bug", "dam", "den", "elf", "fig", "fin", "fur", "hen", "hop", "hum", "ink", "jam", "jar", "jaw",
	"jet", "kit", "log", "mat", "mob", "nap", "orb", "pad", "pub", "rag", "ram", "rim", "rug", "sap", "sip", "sty",
	"tab", "tan", "tar", "tin", "vet", "zip", "ace", "ant", "apt", "ash", "ban", "cab", "cod", "dim", "era", "gel",
	"hay", "hem", "hub", "ion", "jug", "kin", "lad", "lid", "lob", "lug", "nil", "opt", "ore", "pal", "pat", "peg",
	"pod", "pun", "rap", "rep", "rig", "rip", "rot", "sat", "sub", "tot", "wed",
}

// bytesPerToken is vllmsim's tokenizer approximation.
const bytesPerToken = 4

// segment is n random words, each " xyz": exactly n tokens for vllmsim.
func segment(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n * bytesPerToken)
	for range n {
		b.WriteByte(' ')
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}

// prompt joins segments and drops the leading space of the result.
func prompt(segments ...string) string {
	s := strings.Join(segments, "")
	return strings.TrimPrefix(s, " ")
}

// SimTokens is the number of tokens vllmsim counts in text: 4 bytes a token,
// the last possibly shorter, and an empty prompt counts 1
// (e2e/vllmsim/tokenizer.go countTokens and its README).
func SimTokens(text string) int {
	if len(text) == 0 {
		return 1
	}
	return (len(text) + bytesPerToken - 1) / bytesPerToken
}

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// SimChatTokens is the number of prompt tokens vllmsim counts for messages:
// it renders "<|role|>\n" content "\n" per message plus "<|assistant|>\n"
// and counts that text (e2e/vllmsim/tokenizer.go renderChat). A real model's
// chat template adds its own, different, overhead.
func SimChatTokens(msgs []Message) int {
	n := len("<|assistant|>\n")
	for _, m := range msgs {
		n += len("<|") + len(m.Role) + len("|>\n") + len(m.Content) + len("\n")
	}
	return (n + bytesPerToken - 1) / bytesPerToken
}

// SimChatText is the prompt text vllmsim renders for messages, the text its
// prefix cache hashes (SimChatTokens counts it).
func SimChatText(msgs []Message) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString("<|" + m.Role + "|>\n" + m.Content + "\n")
	}
	b.WriteString("<|assistant|>\n")
	return b.String()
}
