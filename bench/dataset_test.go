package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWordsAreFourBytesAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range words {
		require.Len(t, w, 3, w)
		for _, c := range w {
			require.True(t, c >= 'a' && c <= 'z', w)
		}
		require.False(t, seen[w], "duplicate %q", w)
		seen[w] = true
	}
	rng := newRNG(1, 1)
	for _, n := range []int{1, 2, 15, 16, 17, 1000} {
		p := prompt(segment(rng, n))
		assert.Len(t, p, 4*n-1)
		assert.Equal(t, n, SimTokens(p), "n=%d", n)
		assert.Len(t, strings.Fields(p), n)
		assert.False(t, strings.HasPrefix(p, " "))
	}
	assert.Equal(t, 1, SimTokens(""))
}

func TestSimChatTokensRendersVllmsimTemplate(t *testing.T) {
	// "<|system|>\nab\n<|user|>\nc\n<|assistant|>\n" is 14+11+14 = 39 bytes.
	msgs := []Message{{"system", "ab"}, {"user", "c"}}
	assert.Equal(t, (len("<|system|>\nab\n<|user|>\nc\n<|assistant|>\n")+3)/4, SimChatTokens(msgs))
	assert.Equal(t, 10, SimChatTokens(msgs))
	assert.Equal(t, "<|system|>\nab\n<|user|>\nc\n<|assistant|>\n", SimChatText(msgs))
	assert.Equal(t, SimChatTokens(msgs), SimTokens(SimChatText(msgs)))
}

// commonWords is how many leading words a and b share.
func commonWords(a, b string) int {
	wa, wb := strings.Fields(a), strings.Fields(b)
	n := 0
	for n < len(wa) && n < len(wb) && wa[n] == wb[n] {
		n++
	}
	return n
}

func TestRandomLengthsAndPrefix(t *testing.T) {
	// The seeds' shape, scaled in count only.
	c := RandomConfig{InputLen: 1550, OutputLen: 1800, RangeRatio: 0.2, PrefixLen: 10}
	const n = 2000
	reqs, err := Random(newRNG(7, streamDataset), n, c)
	require.NoError(t, err)
	require.Len(t, reqs, n)
	inLo, inHi := 1240, 1860   // floor(1550*0.8), ceil(1550*1.2)
	outLo, outHi := 1440, 2160 // floor(1800*0.8), ceil(1800*1.2)
	var inSum, outSum float64
	inMin, inMax, outMin, outMax := math.MaxInt, 0, math.MaxInt, 0
	prefix := strings.Fields(reqs[0].Prompt)[:10]
	for i, r := range reqs {
		in := r.PromptLen - c.PrefixLen
		require.GreaterOrEqual(t, in, inLo)
		require.LessOrEqual(t, in, inHi)
		require.GreaterOrEqual(t, r.OutputLen, outLo)
		require.LessOrEqual(t, r.OutputLen, outHi)
		inMin, inMax, outMin, outMax = min(inMin, in), max(inMax, in), min(outMin, r.OutputLen), max(outMax, r.OutputLen)
		inSum += float64(in)
		outSum += float64(r.OutputLen)
		// Exact token counts for vllmsim: words = tokens = 4-byte groups.
		w := strings.Fields(r.Prompt)
		require.Equal(t, r.PromptLen, len(w))
		require.Equal(t, r.PromptLen, SimTokens(r.Prompt))
		require.Equal(t, r.PromptLen, r.SimPromptLen)
		require.Equal(t, prefix, w[:10], "request %d lacks the shared prefix", i)
		require.Equal(t, -1, r.Parent)
	}
	// Both ends of the integer-uniform range are drawn, and the mean is the
	// middle (standard error of the mean: (620/sqrt(12))/sqrt(2000) ~ 4).
	assert.Equal(t, []int{inLo, inHi, outLo, outHi}, []int{inMin, inMax, outMin, outMax})
	assert.InDelta(t, float64(inLo+inHi)/2, inSum/n, 20)
	assert.InDelta(t, float64(outLo+outHi)/2, outSum/n, 24)
	// Apart from the prefix the prompts are unrelated: no two share the
	// prefix plus more than a couple of words by chance.
	for i := 1; i < 200; i++ {
		assert.Less(t, commonWords(reqs[0].Prompt, reqs[i].Prompt), 13)
	}
}

func TestRandomRangeEdges(t *testing.T) {
	reqs, err := Random(newRNG(1, 1), 50, RandomConfig{InputLen: 8, OutputLen: 1, RangeRatio: 0})
	require.NoError(t, err)
	for _, r := range reqs {
		assert.Equal(t, 8, r.PromptLen)
		assert.Equal(t, 1, r.OutputLen)
	}
	// Output lengths are at least 1 even when floor(L(1-r)) is 0.
	reqs, err = Random(newRNG(1, 1), 200, RandomConfig{InputLen: 20, OutputLen: 1, RangeRatio: 0.9})
	require.NoError(t, err)
	for _, r := range reqs {
		assert.GreaterOrEqual(t, r.OutputLen, 1)
		assert.LessOrEqual(t, r.OutputLen, 2)
		assert.GreaterOrEqual(t, r.PromptLen, 1)
	}
	_, err = Random(newRNG(1, 1), 1, RandomConfig{InputLen: 4, OutputLen: 1, RangeRatio: 0.9})
	assert.Error(t, err, "floor(4*0.1) = 0: the shortest prompt would be empty (vllm refuses it too)")
	_, err = Random(newRNG(1, 1), 1, RandomConfig{InputLen: 10, OutputLen: 1, RangeRatio: 1})
	assert.Error(t, err)
	_, err = Random(newRNG(1, 1), 1, RandomConfig{InputLen: 0, OutputLen: 1})
	assert.Error(t, err, "an empty prompt is refused, as vllm refuses it")
}

func TestRandomIsDeterministicPerSeed(t *testing.T) {
	c := RandomConfig{InputLen: 50, OutputLen: 10, RangeRatio: 0.5, PrefixLen: 3}
	a, _ := Random(newRNG(3, streamDataset), 20, c)
	b, _ := Random(newRNG(3, streamDataset), 20, c)
	d, _ := Random(newRNG(4, streamDataset), 20, c)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a[0].Prompt, d[0].Prompt)
}

func TestPrefixRepetition(t *testing.T) {
	c := PrefixRepetitionConfig{PrefixLen: 64, SuffixLen: 20, NumPrefixes: 5, OutputLen: 7}
	reqs, err := PrefixRepetition(newRNG(2, streamDataset), 103, c)
	require.NoError(t, err)
	require.Len(t, reqs, 100, "rounded down to a multiple of num_prefixes, as vllm does")
	byPrefix := map[string]int{}
	suffixes := map[string]bool{}
	for _, r := range reqs {
		w := strings.Fields(r.Prompt)
		require.Len(t, w, 84)
		assert.Equal(t, 84, r.PromptLen)
		assert.Equal(t, 84, SimTokens(r.Prompt))
		assert.Equal(t, 7, r.OutputLen)
		byPrefix[strings.Join(w[:64], " ")]++
		suffixes[strings.Join(w[64:], " ")] = true
	}
	assert.Len(t, byPrefix, 5)
	for _, k := range byPrefix {
		assert.Equal(t, 20, k)
	}
	assert.Len(t, suffixes, 100, "every suffix differs")
	// Shuffled: the order does not run prefix by prefix.
	runs := 1
	for i := 1; i < len(reqs); i++ {
		if reqs[i].Prompt[:255] != reqs[i-1].Prompt[:255] {
			runs++
		}
	}
	assert.Greater(t, runs, 50)
	_, err = PrefixRepetition(newRNG(2, 1), 4, c)
	assert.Error(t, err)
}

func TestSharedPrefix(t *testing.T) {
	c := SharedPrefixConfig{NumGroups: 3, PromptsPerGroup: 4, SystemPromptLen: 100, QuestionLen: 10, OutputLen: 5}
	reqs, err := SharedPrefix(newRNG(5, streamDataset), 30, c, false)
	require.NoError(t, err)
	require.Len(t, reqs, 30)
	systems := map[string]int{}
	for i, r := range reqs {
		require.Equal(t, 110, SimTokens(r.Prompt))
		require.Equal(t, 110, r.PromptLen)
		systems[strings.Join(strings.Fields(r.Prompt)[:100], " ")]++
		assert.Equal(t, reqs[i%12], r, "requests cycle through the 12 prompts")
	}
	assert.Len(t, systems, 3)

	chat, err := SharedPrefix(newRNG(5, streamDataset), 12, c, true)
	require.NoError(t, err)
	for i, r := range chat {
		require.Len(t, r.Messages, 2)
		assert.Equal(t, "system", r.Messages[0].Role)
		assert.Equal(t, "user", r.Messages[1].Role)
		// The same words as the completions form, split in two messages.
		assert.Equal(t, reqs[i].Prompt, r.Messages[0].Content+" "+r.Messages[1].Content)
		assert.Equal(t, SimChatTokens(r.Messages), r.SimPromptLen)
	}
}

func TestMultiTurn(t *testing.T) {
	c := MultiTurnConfig{Turns: 3, SystemPromptLen: 20, UserLen: 10, OutputLen: 4}
	reqs, err := MultiTurn(newRNG(9, streamDataset), 10, c)
	require.NoError(t, err)
	require.Len(t, reqs, 10) // 4 conversations, the last one shorter
	var order []int
	for _, r := range reqs {
		order = append(order, r.Conversation)
	}
	assert.Equal(t, []int{0, 1, 2, 3, 0, 1, 2, 3, 0, 1}, order, "turn by turn across conversations")
	for i, r := range reqs {
		turn := i / 4
		if turn == 0 {
			assert.Equal(t, -1, r.Parent)
			require.Len(t, r.Messages, 2)
			assert.Equal(t, "system", r.Messages[0].Role)
		} else {
			assert.Equal(t, i-4, r.Parent)
			require.Len(t, r.Messages, 1)
		}
		assert.Equal(t, "user", r.Messages[len(r.Messages)-1].Role)
		// The history grows by a user message and an answer each turn.
		assert.Equal(t, 20+10*(turn+1)+4*turn, r.PromptLen, "request %d", i)
		// vllmsim's count: rendered history with answers of 4 bytes a token.
		var hist []Message
		for j := i; j >= 0; j = reqs[j].Parent {
			msgs := reqs[j].Messages
			if j != i {
				msgs = append(append([]Message(nil), msgs...), Message{"assistant", strings.Repeat("y", 4*reqs[j].OutputLen)})
			}
			hist = append(append([]Message(nil), msgs...), hist...)
		}
		assert.Equal(t, SimChatTokens(hist), r.SimPromptLen, "request %d", i)
	}
}

func TestMultiTurnSharedDocuments(t *testing.T) {
	c := MultiTurnConfig{Turns: 2, SystemPromptLen: 50, UserLen: 5, OutputLen: 3, RangeRatio: 0.2, Documents: 3}
	reqs, err := MultiTurn(newRNG(4, streamDataset), 40, c)
	require.NoError(t, err)
	require.Len(t, reqs, 40)
	docs := map[string]int{}
	for _, r := range reqs {
		if r.Parent >= 0 {
			require.Len(t, r.Messages, 1, "later turns add a user message only")
			continue
		}
		require.Equal(t, "system", r.Messages[0].Role)
		words := len(strings.Fields(r.Messages[0].Content))
		assert.GreaterOrEqual(t, words, 40)
		assert.LessOrEqual(t, words, 60)
		docs[r.Messages[0].Content]++
		assert.Equal(t, words+len(strings.Fields(r.Messages[1].Content)), r.PromptLen)
	}
	assert.Len(t, docs, 3, "20 conversations share the 3 documents")
	for d, n := range docs {
		assert.Less(t, n, 20, "no document takes every conversation (%d words)", len(strings.Fields(d)))
	}
	_, err = MultiTurn(newRNG(1, 1), 4, MultiTurnConfig{Turns: 2, UserLen: 1, OutputLen: 1, Documents: 2})
	require.ErrorContains(t, err, "system-prompt-len")
}

func TestLoRAMix(t *testing.T) {
	mods, err := ParseLoRAModules([]string{"sql-lora:18", "tweet-summary:2"})
	require.NoError(t, err)
	reqs, _ := Random(newRNG(1, 1), 5000, RandomConfig{InputLen: 1, OutputLen: 1})
	require.NoError(t, AssignLoRA(newRNG(1, streamLoRA), reqs, mods, false))
	n := map[string]int{}
	for _, r := range reqs {
		n[r.Model]++
	}
	// 90/10 as the seeds' canary; binomial sd = sqrt(5000*.9*.1) ~ 21.
	assert.InDelta(t, 4500, n["sql-lora"], 110)
	assert.Equal(t, 5000, n["sql-lora"]+n["tweet-summary"])

	plain, _ := ParseLoRAModules([]string{"a", "b", "c"})
	require.NoError(t, AssignLoRA(nil, reqs[:7], plain, true))
	var got []string
	for _, r := range reqs[:7] {
		got = append(got, r.Model)
	}
	assert.Equal(t, []string{"a", "b", "c", "a", "b", "c", "a"}, got)

	conv, _ := MultiTurn(newRNG(1, 1), 12, MultiTurnConfig{Turns: 3, UserLen: 2, OutputLen: 2})
	require.NoError(t, AssignLoRA(nil, conv, plain, true))
	for _, r := range conv {
		if r.Parent >= 0 {
			assert.Equal(t, conv[r.Parent].Model, r.Model, "a conversation keeps its adapter")
		}
	}
	assert.Equal(t, []string{"a", "b", "c", "a"}, []string{conv[0].Model, conv[1].Model, conv[2].Model, conv[3].Model})

	for _, bad := range []string{"x:-1", ":3", "x:abc"} {
		_, err := ParseLoRAModules([]string{bad})
		assert.Error(t, err, bad)
	}
}
