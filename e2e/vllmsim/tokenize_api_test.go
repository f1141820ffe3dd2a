package vllmsim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenizerRoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "abcd", "hello world", "héllo wörld, ünïcode ✓"} {
		ids := tokenize([]byte(s))
		assert.Len(t, ids, countTokens(len(s)))
		assert.Equal(t, s, detokenize(ids), "%q", s)
	}
	// Token-id prompts hash as their own ids.
	ids := []int64{1, 2, 1<<32 - 1, 65}
	got := tokenize(idsToBytes(ids))
	assert.Equal(t, []uint32{1, 2, 1<<32 - 1, 65}, got)
}

func TestTokenizeEndpoints(t *testing.T) {
	s := startFleet(t, Config{Model: "m", MaxModelLen: 4096, LoRAModules: []LoRAModule{{"sql", "/sql"}}}).Servers[0]
	u := s.URL()

	code, b := post(t, u+"/tokenize", `{"model":"sql","prompt":"hello world!","return_token_strs":true}`)
	require.Equal(t, 200, code, string(b))
	var tr struct {
		Count       int       `json:"count"`
		MaxModelLen int       `json:"max_model_len"`
		Tokens      []uint32  `json:"tokens"`
		TokenStrs   *[]string `json:"token_strs"`
	}
	require.NoError(t, json.Unmarshal(b, &tr))
	assert.Equal(t, 3, tr.Count)
	assert.Equal(t, 4096, tr.MaxModelLen)
	assert.Equal(t, tokenize([]byte("hello world!")), tr.Tokens)
	require.NotNil(t, tr.TokenStrs)
	assert.Equal(t, []string{"hell", "o wo", "rld!"}, *tr.TokenStrs)

	msgs := `[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]`
	chat := renderChat([]chatMessage{{"system", "be brief"}, {"user", "hi"}}, defaultChatTemplate)
	assert.Equal(t, tokenize(chat), tokens(t, u, `{"messages":`+msgs+`}`))
	open := renderChat([]chatMessage{{"system", "be brief"}, {"user", "hi"}}, chatTemplate{continueFinalMessage: true})
	assert.Equal(t, tokenize(open), tokens(t, u, `{"messages":`+msgs+`,"add_generation_prompt":false,"continue_final_message":true}`))
	assert.True(t, strings.HasSuffix(string(open), "hi"))

	code, b = post(t, u+"/detokenize", `{"tokens":[1819043176,1870078063,560229490]}`)
	require.Equal(t, 200, code, string(b))
	assert.JSONEq(t, `{"prompt":"hello world!"}`, string(b))

	for _, c := range []struct {
		path, body string
		code       int
	}{
		{"/tokenize", `{"prompt":"x","model":"nope"}`, 404},
		{"/tokenize", `{}`, 400},
		{"/tokenize", `{"prompt":"x","messages":[]}`, 400},
		{"/tokenize", `{"messages":[{"role":"user","content":"x"}],"continue_final_message":true}`, 400},
		{"/tokenize", `{"prompt":5}`, 400},
		{"/detokenize", `{"tokens":[-1]}`, 400},
		{"/detokenize", `{"tokens":[4294967296]}`, 400},
		{"/detokenize", `{}`, 400},
		{"/v1/completions/render", `{"prompt":"x","max_tokens":5000}`, 400},
		{"/v1/chat/completions/render", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404},
	} {
		code, b := post(t, u+c.path, c.body)
		assert.Equal(t, c.code, code, "%s %s: %s", c.path, c.body, b)
		if code != 200 {
			assert.Contains(t, string(b), `"error"`)
		}
	}
}

func tokens(t *testing.T, base, body string) []uint32 {
	t.Helper()
	code, b := post(t, base+"/tokenize", body)
	require.Equal(t, 200, code, string(b))
	var r struct {
		Tokens []uint32 `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal(b, &r))
	return r.Tokens
}

func TestRenderEndpoints(t *testing.T) {
	s := startFleet(t, Config{Model: "m", MaxModelLen: 4096}).Servers[0]
	code, b := post(t, s.URL()+"/v1/completions/render", `{"model":"m","prompt":["abcdefgh","xy"],"max_tokens":7,"ignore_eos":true}`)
	require.Equal(t, 200, code, string(b))
	var list []map[string]any
	require.NoError(t, json.Unmarshal(b, &list))
	require.Len(t, list, 2, "one GenerateRequest per prompt")
	assert.True(t, strings.HasPrefix(list[0]["request_id"].(string), "cmpl-"))
	assert.Equal(t, []any{1684234849.0, 1751606885.0}, list[0]["token_ids"])
	assert.Equal(t, "m", list[0]["model"])
	assert.Nil(t, list[0]["features"])
	sp := list[0]["sampling_params"].(map[string]any)
	assert.Equal(t, 7.0, sp["max_tokens"])
	assert.Equal(t, true, sp["ignore_eos"])

	code, b = post(t, s.URL()+"/v1/chat/completions/render", `{"messages":[{"role":"user","content":"hi"}]}`)
	require.Equal(t, 200, code, string(b))
	var one struct {
		RequestID      string         `json:"request_id"`
		TokenIDs       []uint32       `json:"token_ids"`
		Model          *string        `json:"model"`
		SamplingParams map[string]any `json:"sampling_params"`
	}
	require.NoError(t, json.Unmarshal(b, &one))
	assert.True(t, strings.HasPrefix(one.RequestID, "chatcmpl-"))
	want := tokenize(renderChat([]chatMessage{{"user", "hi"}}, defaultChatTemplate))
	assert.Equal(t, want, one.TokenIDs)
	assert.Nil(t, one.Model, "model stays null when the request had none, as vLLM's")
	assert.Equal(t, float64(4096-len(want)), one.SamplingParams["max_tokens"], "default: the rest of the context")
	assert.Zero(t, s.Stats().PromptTokens, "render runs nothing")
}
