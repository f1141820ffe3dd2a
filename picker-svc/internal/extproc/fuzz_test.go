package extproc

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// scriptStream is a ProcessServer that plays a fixed list of messages and
// records the answers; only Recv, Send and Context are ever called.
type scriptStream struct {
	extprocv3.ExternalProcessor_ProcessServer
	in  []*extprocv3.ProcessingRequest
	out []*extprocv3.ProcessingResponse
}

func (s *scriptStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if len(s.in) == 0 {
		return nil, io.EOF
	}
	r := s.in[0]
	s.in = s.in[1:]
	return r, nil
}

func (s *scriptStream) Send(r *extprocv3.ProcessingResponse) error {
	s.out = append(s.out, r)
	return nil
}

func (s *scriptStream) Context() context.Context { return context.Background() }

// Any request body, cut anywhere, with any objective header and any
// response (type, bytes, cut anywhere): the server never panics, answers
// first with the held headers or an immediate response, streams back a
// body that is JSON whenever it routed a JSON body, and ends the pick
// exactly once.
func FuzzExchange(f *testing.F) {
	f.Add([]byte(body), 10, "batch", "text/event-stream", []byte("data: {\"usage\":{\"prompt_tokens\":1}}\n\ndata: [DONE]\n\n"), 7)
	f.Add([]byte(`{"model":"m","stream":true,"stream_options":null,"prompt":[1,2]}`), 0, "", "application/json", []byte(`{"usage":{"completion_tokens":2}}`), 3)
	f.Add([]byte(`{"model":"m","model":"n"}`), 5, "x", "", []byte{0x1f, 0x8b}, 1)
	f.Add([]byte(`[]`), 1, "", "text/event-stream; charset=utf-8", []byte("data: \r\n\r"), 2)
	f.Fuzz(func(t *testing.T, reqBody []byte, cut int, objective, ctype string, respBody []byte, respCut int) {
		cut = clamp(cut, len(reqBody))
		respCut = clamp(respCut, len(respBody))
		dec := &fakeDecider{next: picked}
		hdr := requestHeaders(false, nil, nil)
		hdr.GetRequestHeaders().Headers.Headers = append(hdr.GetRequestHeaders().Headers.Headers,
			&corev3.HeaderValue{Key: "x-gateway-inference-objective", RawValue: []byte(objective)})
		st := &scriptStream{in: []*extprocv3.ProcessingRequest{hdr, requestBody(string(reqBody[:cut]), false),
			requestBody(string(reqBody[cut:]), true), responseHeaders(ctype),
			responseBody(string(respBody[:respCut]), false), responseBody(string(respBody[respCut:]), true)}}
		if err := New(dec, Config{MaxBodyBytes: 1 << 16}, nil).Process(st); err != nil {
			t.Fatalf("Process: %v", err)
		}
		if len(st.out) == 0 {
			t.Fatal("no answer")
		}
		if ir := st.out[0].GetImmediateResponse(); ir != nil {
			if !json.Valid(ir.GetBody()) {
				t.Fatalf("refusal body is not JSON: %q", ir.GetBody())
			}
			if len(dec.ended()) != 0 {
				t.Fatal("a refused request ended a pick")
			}
			return
		}
		if st.out[0].GetRequestHeaders() == nil {
			t.Fatalf("first answer %T, want the held headers'", st.out[0].GetResponse())
		}
		var sent []byte
		for _, r := range st.out[1:] {
			if rb := r.GetRequestBody(); rb != nil {
				sent = append(sent, rb.GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()...)
			}
		}
		if json.Valid(reqBody) && !json.Valid(sent) {
			t.Fatalf("routed %q as %q", reqBody, sent)
		}
		if got := dec.ended(); len(got) != 1 || got[0] != picked.Pick.PickID {
			t.Fatalf("ends %v, want one of pick %d", got, picked.Pick.PickID)
		}
		if len(dec.usageCalls()) != 1 {
			t.Fatalf("usage recorded %d times", len(dec.usageCalls()))
		}
	})
}

func clamp(n, hi int) int {
	if n < 0 {
		n = -n
	}
	if hi == 0 {
		return 0
	}
	return n % (hi + 1)
}
