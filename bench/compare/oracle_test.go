package compare

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/meshllm/meshllm/bench"
	"github.com/meshllm/meshllm/e2e/vllmsim"
)

// tinySharedPrefix is 2 groups x 3 prompts of a 40-token system prompt and
// a 25-token question, cycled to 8 requests: requests 6 and 7 repeat 0 and 1.
func tinySharedPrefix(t *testing.T, chat bool) []bench.SampleRequest {
	reqs, err := bench.SharedPrefix(rand.New(rand.NewPCG(7, 1)), 8, bench.SharedPrefixConfig{
		NumGroups: 2, PromptsPerGroup: 3, SystemPromptLen: 40, QuestionLen: 25, OutputLen: 2}, chat)
	require.NoError(t, err)
	return reqs
}

func completionPrompts(reqs []bench.SampleRequest) []simPrompt {
	var out []simPrompt
	for _, r := range reqs {
		out = append(out, simPrompt{Model: "m", Text: r.Prompt})
	}
	return out
}

// The bound by hand. A prompt is the system prompt's 40 words and the
// question's 25, less the leading space: 259 bytes, 65 tokens (the last one
// 3 bytes), 4 full blocks of 16 tokens (64 bytes), all 4 hittable
// ((65-1)/16). Prompts of a group share the system prompt's 159 bytes and
// the question's leading space, 160 bytes: 2 full blocks. So each of the 4
// later prompts of a group hits 2 blocks (32 tokens), each of the 2 repeats
// all 4 (64 tokens): 4x32 + 2x64 = 256 of 8x65 = 520 tokens.
func TestPrefixCacheBoundByHand(t *testing.T) {
	reqs := tinySharedPrefix(t, false)
	for _, r := range reqs {
		require.Len(t, r.Prompt, 259)
	}
	hits, queries := prefixCacheBound(completionPrompts(reqs), 16)
	require.Equal(t, 520, queries)
	require.Equal(t, 256, hits)

	// Order does not matter for the total: every distinct block is
	// computed once, whichever request comes first.
	rev := completionPrompts(reqs)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	h, q := prefixCacheBound(rev, 16)
	require.Equal(t, [2]int{256, 520}, [2]int{h, q})

	// The same prompt under another model or adapter shares nothing.
	h, _ = prefixCacheBound([]simPrompt{{"a", reqs[0].Prompt}, {"b", reqs[0].Prompt}}, 16)
	require.Zero(t, h)

	// A prompt of exactly 2 blocks repeated hits 1: its last token, and
	// with it the last block, is always recomputed.
	two := strings.Repeat("abcd", 32)
	h, q = prefixCacheBound([]simPrompt{{"m", two}, {"m", two}}, 16)
	require.Equal(t, [2]int{16, 64}, [2]int{h, q})

	// Shorter than a block: nothing to cache; empty: one token.
	h, q = prefixCacheBound([]simPrompt{{"m", "abc"}, {"m", "abc"}, {"m", ""}}, 16)
	require.Equal(t, [2]int{0, 3}, [2]int{h, q})
}

// One vllmsim pod with room for everything, sent one request at a time, is
// the oracle: its prefix-cache counters must equal the bound exactly, on
// completions and on chat (whose template the bound renders as vllmsim
// does).
func TestPrefixCacheBoundIsVllmsimsCountOnOneUnboundedPod(t *testing.T) {
	for _, chat := range []bool{false, true} {
		srv, err := vllmsim.NewServer(vllmsim.Config{Model: "m", Speed: 1000, NumGPUBlocks: 4096, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		require.NoError(t, srv.Start(ctx))
		endpoint := "/v1/completions"
		if chat {
			endpoint = "/v1/chat/completions"
		}
		reqs := tinySharedPrefix(t, chat)
		res, err := bench.Run(ctx, bench.RunConfig{
			APIURL: srv.URL() + endpoint, Chat: chat, Model: "m", Requests: reqs, RequestRate: math.Inf(1), Burstiness: 1,
			MaxConcurrency: 1, IgnoreEOS: true,
		})
		require.NoError(t, err)
		for _, o := range res.Outputs {
			require.True(t, o.Success, o.Error)
		}
		st := srv.Stats()
		require.NoError(t, srv.Close())
		cancel()
		want := float64(st.PrefixHits) / float64(st.PrefixQueries) * 100
		require.Positive(t, st.PrefixHits)
		require.InDelta(t, want, sentPrefixBound(reqs, res, "m", 16), 1e-9, "chat=%v: vllmsim hit %d of %d tokens", chat, st.PrefixHits, st.PrefixQueries)
	}
}
