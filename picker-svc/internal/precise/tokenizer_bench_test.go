package precise

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTokenizer: the token ids of a 10,000-token prompt from a fake
// engine over loopback HTTP (render, and /tokenize for an engine without
// render), and from the cache. The fake engine's tokenizing (one id a
// byte) is in the figure; a real vLLM's costs more.
//
//	go test ./picker-svc/internal/precise -run '^$' -bench Tokenizer -count 6 -cpu 1
func BenchmarkTokenizer(b *testing.B) {
	current := httptest.NewServer(fakeEngine{model: "m"})
	defer current.Close()
	older := httptest.NewServer(&olderEngine{next: fakeEngine{model: "m"}})
	defer older.Close()
	// The fake engine's tokenizer takes a byte a token.
	prompt := strings.Repeat("abcd", 2_500-2) // and 8 digits
	body := func(i int) []byte { return fmt.Appendf(nil, `{"model":"m","prompt":"%s%08d"}`, prompt, i) }
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	for _, c := range []struct {
		name   string
		srv    *httptest.Server
		cached bool
	}{{"render", current, false}, {"tokenize", older, false}, {"cached", current, true}} {
		b.Run(c.name, func(b *testing.B) {
			tok := NewTokenizer(TokenizerConfig{})
			first := body(0)
			ids, err := tok.Tokens(context.Background(), addr(c.srv), first)
			if err != nil || len(ids) != 10_000 {
				b.Fatalf("%d ids, %v", len(ids), err)
			}
			for i := 1; b.Loop(); i++ {
				bd := first // a cache hit
				if !c.cached {
					bd = body(i) // a new prompt (building it is a few µs of the figure)
				}
				if _, err := tok.Tokens(context.Background(), addr(c.srv), bd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
