package compare

// The prefix-cache oracle: the best prefix-cache hit rate any router could
// reach on the prompts a run sent. A router that knew every pod's cache
// would send each request where its longest cached prefix is; the best case
// of that is one cache that never evicts, where every block of every earlier
// prompt is still there. The bound is that cache's hit rate with each
// request admitted once, in the order sent, counted as vllmsim counts
// (e2e/vllmsim/engine.go, kvcache.go lookup, tokenizer.go blockHashes):
//
//   - a prompt of b bytes is ceil(b/4) tokens (at least 1), every one a
//     query;
//   - only full blocks of BlockSize tokens are cached, chained: block i is
//     found only with blocks 0..i, and only under the same model or adapter
//     name (vLLM keys adapters apart);
//   - a hit is the leading run of found blocks, at most (tokens-1)/BlockSize
//     of them (the last token is always recomputed, for its logits).
//
// It is an upper bound: it ignores eviction (a pod's KV capacity), load
// (spreading a group over pods to keep queues short costs its prefix once
// per pod), requests of one group admitted in the same step (neither finds
// the other's blocks yet), and an InferenceModel's draw among adapters
// (requests of one model split over adapters share less). One caveat runs
// the other way: vllmsim, like vLLM, counts a preempted request's queries
// and hits again when it is readmitted, so under preemption a measured rate
// can pass the bound.

// simPrompt is what vllmsim hashes for one request: the model or adapter
// name it is served under and the prompt text (chat: the rendered template).
type simPrompt struct {
	Model, Text string
}

// prefixCacheBound returns the hit and query tokens of the oracle cache over
// prompts, in order, with blockSize tokens a block.
func prefixCacheBound(prompts []simPrompt, blockSize int) (hits, queries int) {
	const bytesPerToken = 4 // e2e/vllmsim/tokenizer.go
	blockBytes := blockSize * bytesPerToken
	// The cache is a trie of blocks: a block is known by its parent's id
	// and its own bytes (substrings of the prompts, not copies), which is
	// exactly vllmsim's hash chain without its hashing.
	type blockKey struct {
		parent int32
		bytes  string
	}
	roots := map[string]int32{}
	blocks := map[blockKey]int32{}
	next := int32(0)
	newID := func() int32 { next++; return next }
	for _, p := range prompts {
		tokens := max((len(p.Text)+bytesPerToken-1)/bytesPerToken, 1)
		queries += tokens
		root, ok := roots[p.Model]
		if !ok {
			root = newID()
			roots[p.Model] = root
		}
		full := tokens / blockSize
		limit := min(full, (tokens-1)/blockSize)
		cur, found := root, true
		for i := 0; i < full; i++ {
			k := blockKey{cur, p.Text[i*blockBytes : min((i+1)*blockBytes, len(p.Text))]}
			id, ok := blocks[k]
			if !ok {
				id = newID()
				blocks[k] = id
			}
			found = found && ok
			if found && i < limit {
				hits += blockSize
			}
			cur = id
		}
	}
	return hits, queries
}
