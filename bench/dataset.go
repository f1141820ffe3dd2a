package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// SampleRequest is one request of a dataset, as vllm bench's SampleRequest
// (vllm/benchmarks/datasets/abstractions.py): a prompt, its length and the
// expected output length (sent as max_tokens).
type SampleRequest struct {
	// Prompt is the completions prompt; on chat endpoints it is the user
	// message, unless Messages is set.
	Prompt string
	// Messages, when set, are this request's own chat messages (a system
	// prompt and a question, or one turn of a conversation).
	Messages []Message
	// PromptLen is the prompt's length in words: tokens as the dataset meant
	// them (vllm's prompt_len), before any chat template. A server's
	// usage.prompt_tokens replaces it in the results.
	PromptLen int
	// SimPromptLen is the prompt tokens vllmsim will count for what is sent,
	// chat template and conversation history included (assuming each earlier
	// answer had its OutputLen tokens, as ignore_eos makes it).
	SimPromptLen int
	OutputLen    int
	// Model overrides the benchmark's model (LoRA mix).
	Model string
	// Parent is the index of the previous turn of the same conversation (its
	// messages and answer are sent before Messages), or -1.
	Parent int
	// Conversation numbers multi-turn conversations (-1 otherwise).
	Conversation int
}

// RandomConfig is vllm bench's `random` dataset (RandomDataset in
// vllm/benchmarks/datasets/random.py): input and output lengths drawn from
// U[floor(L(1-r)), ceil(L(1+r))] (output at least 1), each prompt preceded by
// one random prefix of PrefixLen tokens shared by all requests, so a prompt
// has PrefixLen + input tokens.
type RandomConfig struct {
	InputLen, OutputLen int
	RangeRatio          float64
	PrefixLen           int
}

// lengthRange is vllm's [floor(l(1-r)), ceil(l(1+r))].
func lengthRange(l int, r float64) (lo, hi int) {
	return int(math.Floor(float64(l) * (1 - r))), int(math.Ceil(float64(l) * (1 + r)))
}

// uniformInt draws from [lo, hi] inclusive, as numpy's integers(lo, hi+1).
func uniformInt(rng *rand.Rand, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + rng.IntN(hi-lo+1)
}

// Random builds n requests of the random dataset.
func Random(rng *rand.Rand, n int, c RandomConfig) ([]SampleRequest, error) {
	if c.RangeRatio < 0 || c.RangeRatio >= 1 {
		return nil, errors.New("random: --random-range-ratio must be in [0, 1)")
	}
	if c.InputLen < 0 || c.OutputLen < 0 || c.PrefixLen < 0 {
		return nil, errors.New("random: lengths must not be negative")
	}
	inLo, inHi := lengthRange(c.InputLen, c.RangeRatio)
	outLo, outHi := lengthRange(c.OutputLen, c.RangeRatio)
	outLo, outHi = max(outLo, 1), max(outHi, 1)
	if c.PrefixLen+inLo < 1 {
		return nil, fmt.Errorf("random: --random-input-len too small: the shortest prompt (prefix + input) would be %d tokens", c.PrefixLen+inLo)
	}
	prefix := segment(rng, c.PrefixLen)
	out := make([]SampleRequest, n)
	for i := range out {
		in := uniformInt(rng, inLo, inHi)
		p := prompt(prefix, segment(rng, in))
		out[i] = SampleRequest{
			Prompt: p, PromptLen: c.PrefixLen + in, SimPromptLen: SimTokens(p),
			OutputLen: uniformInt(rng, outLo, outHi), Parent: -1, Conversation: -1,
		}
	}
	return out, nil
}

// PrefixRepetitionConfig is vllm bench's `prefix_repetition` dataset
// (PrefixRepetitionRandomDataset in
// vllm/benchmarks/datasets/prefix_repetition.py): NumPrefixes random prefixes
// of PrefixLen tokens, each followed by n/NumPrefixes different random
// suffixes of SuffixLen tokens, shuffled. As in vllm, n is rounded down to a
// multiple of NumPrefixes.
type PrefixRepetitionConfig struct {
	PrefixLen, SuffixLen, NumPrefixes, OutputLen int
	// NoShuffle keeps the requests prefix by prefix (vllm's --disable-shuffle).
	NoShuffle bool
}

// PrefixRepetition builds the prefix_repetition dataset.
func PrefixRepetition(rng *rand.Rand, n int, c PrefixRepetitionConfig) ([]SampleRequest, error) {
	if c.NumPrefixes <= 0 || c.PrefixLen < 0 || c.SuffixLen < 0 || c.OutputLen < 1 {
		return nil, errors.New("prefix_repetition: needs num-prefixes >= 1, lengths >= 0 and output-len >= 1")
	}
	per := n / c.NumPrefixes
	if per == 0 {
		return nil, fmt.Errorf("prefix_repetition: num_prompts (%d) must be at least num_prefixes (%d)", n, c.NumPrefixes)
	}
	if c.PrefixLen+c.SuffixLen < 1 {
		return nil, errors.New("prefix_repetition: prefix + suffix must be at least 1 token")
	}
	out := make([]SampleRequest, 0, per*c.NumPrefixes)
	for range c.NumPrefixes {
		prefix := segment(rng, c.PrefixLen)
		for range per {
			p := prompt(prefix, segment(rng, c.SuffixLen))
			out = append(out, SampleRequest{
				Prompt: p, PromptLen: c.PrefixLen + c.SuffixLen, SimPromptLen: SimTokens(p),
				OutputLen: c.OutputLen, Parent: -1, Conversation: -1,
			})
		}
	}
	if !c.NoShuffle {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out, nil
}

// SharedPrefixConfig is inference-perf's `shared_prefix` shape
// (kubernetes-sigs/inference-perf inference_perf/datagen/shared_prefix_datagen.py):
// NumGroups system prompts of SystemPromptLen tokens, each with
// PromptsPerGroup questions of QuestionLen tokens; the prompts are shuffled
// and requests cycle through them. On /v1/completions the prompt is system
// prompt + question (inference-perf joins them with a space; here the
// question's words carry it); on chat they are a system and a user message.
type SharedPrefixConfig struct {
	NumGroups, PromptsPerGroup, SystemPromptLen, QuestionLen, OutputLen int
	// NoShuffle keeps the prompts group by group (--disable-shuffle).
	NoShuffle bool
}

// SharedPrefix builds n requests of the shared_prefix shape.
func SharedPrefix(rng *rand.Rand, n int, c SharedPrefixConfig, chat bool) ([]SampleRequest, error) {
	if c.NumGroups <= 0 || c.PromptsPerGroup <= 0 || c.SystemPromptLen < 0 || c.QuestionLen < 1 || c.OutputLen < 1 {
		return nil, errors.New("shared_prefix: needs groups >= 1, prompts per group >= 1, question-len >= 1, output-len >= 1")
	}
	base := make([]SampleRequest, 0, c.NumGroups*c.PromptsPerGroup)
	for range c.NumGroups {
		system := segment(rng, c.SystemPromptLen)
		for range c.PromptsPerGroup {
			q := segment(rng, c.QuestionLen)
			r := SampleRequest{PromptLen: c.SystemPromptLen + c.QuestionLen, OutputLen: c.OutputLen, Parent: -1, Conversation: -1}
			if chat {
				r.Messages = []Message{{Role: "system", Content: prompt(system)}, {Role: "user", Content: prompt(q)}}
				r.SimPromptLen = SimChatTokens(r.Messages)
			} else {
				r.Prompt = prompt(system, q)
				r.SimPromptLen = SimTokens(r.Prompt)
			}
			base = append(base, r)
		}
	}
	if !c.NoShuffle {
		rng.Shuffle(len(base), func(i, j int) { base[i], base[j] = base[j], base[i] })
	}
	out := make([]SampleRequest, n)
	for i := range out {
		out[i] = base[i%len(base)]
	}
	return out, nil
}

// MultiTurnConfig is a multi-turn chat: conversations of Turns turns whose
// history grows turn by turn. Turn t sends every earlier message, the
// server's earlier answers included, then a new user message of about
// UserLen tokens; the first turn may start with a system prompt. Lengths of
// user messages and answers vary with RangeRatio as in `random`.
//
// With Documents > 0 the system prompts are shared: there are Documents of
// them (about SystemPromptLen tokens each, varied by RangeRatio), and each
// conversation opens with one drawn at random, as sessions about the same
// documents do.
type MultiTurnConfig struct {
	Turns, SystemPromptLen, UserLen, OutputLen int
	RangeRatio                                 float64
	Documents                                  int
}

// MultiTurn builds n requests: ceil(n/Turns) conversations (the last one
// shorter when Turns does not divide n), ordered turn by turn across
// conversations (every first turn, then every second turn, ...), so that a
// turn is rarely waiting for its previous one to finish.
func MultiTurn(rng *rand.Rand, n int, c MultiTurnConfig) ([]SampleRequest, error) {
	if c.Turns < 1 || c.UserLen < 1 || c.OutputLen < 1 || c.SystemPromptLen < 0 {
		return nil, errors.New("multi_turn: needs turns >= 1, user-len >= 1, output-len >= 1")
	}
	if c.RangeRatio < 0 || c.RangeRatio >= 1 {
		return nil, errors.New("multi_turn: range ratio must be in [0, 1)")
	}
	if c.Documents < 0 || (c.Documents > 0 && c.SystemPromptLen < 1) {
		return nil, errors.New("multi_turn: shared documents need num-documents >= 1 and system-prompt-len >= 1")
	}
	var docs []string
	var docLens []int
	dLo, dHi := lengthRange(c.SystemPromptLen, c.RangeRatio)
	for range c.Documents {
		l := max(1, uniformInt(rng, dLo, dHi))
		docs, docLens = append(docs, prompt(segment(rng, l))), append(docLens, l)
	}
	convs := (n + c.Turns - 1) / c.Turns
	uLo, uHi := lengthRange(c.UserLen, c.RangeRatio)
	oLo, oHi := lengthRange(c.OutputLen, c.RangeRatio)
	uLo, oLo = max(uLo, 1), max(oLo, 1)
	// history[k] is conversation k's messages so far as vllmsim will see
	// them (answers as their length in filler bytes), for SimPromptLen.
	history := make([][]Message, convs)
	contextWords := make([]int, convs)
	last := make([]int, convs)
	out := make([]SampleRequest, 0, n)
	for t := 0; t < c.Turns && len(out) < n; t++ {
		for k := 0; k < convs && len(out) < n; k++ {
			var msgs []Message
			if t == 0 {
				last[k] = -1
				switch {
				case len(docs) > 0:
					d := rng.IntN(len(docs))
					msgs = append(msgs, Message{Role: "system", Content: docs[d]})
					contextWords[k] += docLens[d]
				case c.SystemPromptLen > 0:
					msgs = append(msgs, Message{Role: "system", Content: prompt(segment(rng, c.SystemPromptLen))})
					contextWords[k] += c.SystemPromptLen
				}
			}
			u := uniformInt(rng, uLo, uHi)
			msgs = append(msgs, Message{Role: "user", Content: prompt(segment(rng, u))})
			contextWords[k] += u
			history[k] = append(history[k], msgs...)
			r := SampleRequest{
				Messages: msgs, PromptLen: contextWords[k], SimPromptLen: SimChatTokens(history[k]),
				OutputLen: uniformInt(rng, oLo, oHi), Parent: last[k], Conversation: k,
			}
			// vllmsim's answer is OutputLen filler words of 4 bytes, the
			// first with a leading space.
			history[k] = append(history[k], Message{Role: "assistant", Content: strings.Repeat("x", bytesPerToken*r.OutputLen)})
			contextWords[k] += r.OutputLen
			last[k] = len(out)
			out = append(out, r)
		}
	}
	return out, nil
}

// LoRAModule is one adapter of a LoRA mix, with its relative weight.
type LoRAModule struct {
	Name   string
	Weight float64
}

// ParseLoRAModules reads names, each optionally "name:weight" (weight
// defaults to 1). vllm bench takes plain names and picks uniformly; weights
// split traffic the way an InferenceModel's targetModels do.
func ParseLoRAModules(list []string) ([]LoRAModule, error) {
	var out []LoRAModule
	for _, s := range list {
		name, w := s, 1.0
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			f, err := strconv.ParseFloat(s[i+1:], 64)
			if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("lora module %q: weight must be a non-negative number", s)
			}
			name, w = s[:i], f
		}
		if name == "" {
			return nil, fmt.Errorf("lora module %q: empty name", s)
		}
		out = append(out, LoRAModule{Name: name, Weight: w})
	}
	return out, nil
}

// AssignLoRA spreads requests over adapters, as vllm bench's --lora-modules
// and --lora-assignment do (random: an independent weighted draw per
// request; round-robin: in turn). A conversation keeps its first turn's
// adapter, so its history stays in one adapter's cache.
func AssignLoRA(rng *rand.Rand, reqs []SampleRequest, mods []LoRAModule, roundRobin bool) error {
	if len(mods) == 0 {
		return nil
	}
	var total float64
	for _, m := range mods {
		total += m.Weight
	}
	if total <= 0 {
		return errors.New("lora modules: weights sum to zero")
	}
	next := 0
	pick := func() string {
		if roundRobin {
			m := mods[next%len(mods)]
			next++
			return m.Name
		}
		x := rng.Float64() * total
		for _, m := range mods {
			if x < m.Weight {
				return m.Name
			}
			x -= m.Weight
		}
		return mods[len(mods)-1].Name
	}
	for i := range reqs {
		if p := reqs[i].Parent; p >= 0 {
			reqs[i].Model = reqs[p].Model
			continue
		}
		reqs[i].Model = pick()
	}
	return nil
}
