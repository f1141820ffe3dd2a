package capped

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// endless never ends and counts what was asked of it.
type endless struct{ read int }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.read += len(p)
	return len(p), nil
}

func TestReadAll(t *testing.T) {
	const limit = 10
	boom := errors.New("boom")
	body := func(n int) io.Reader { return strings.NewReader(strings.Repeat("a", n)) }
	for _, tc := range []struct {
		name    string
		r       io.Reader
		want    string
		wantErr error
	}{
		{"empty", body(0), "", nil},
		{"under the limit", body(3), "aaa", nil},
		{"exactly the limit", body(limit), strings.Repeat("a", limit), nil},
		{"limit+1", body(limit + 1), strings.Repeat("a", limit+1), ErrTooLarge},
		{"far over", body(10 * limit), strings.Repeat("a", limit+1), ErrTooLarge},
		{"one byte a read, at the limit", iotest.OneByteReader(body(limit)), strings.Repeat("a", limit), nil},
		{"one byte a read, limit+1", iotest.OneByteReader(body(limit + 1)), strings.Repeat("a", limit+1), ErrTooLarge},
		{"half reads", iotest.HalfReader(body(limit)), strings.Repeat("a", limit), nil},
		{"EOF with the last data", iotest.DataErrReader(body(limit)), strings.Repeat("a", limit), nil},
		{"EOF with data past the limit", iotest.DataErrReader(body(limit + 1)), strings.Repeat("a", limit+1), ErrTooLarge},
		{"error at once", iotest.ErrReader(boom), "", boom},
		{"error after data", io.MultiReader(body(4), iotest.ErrReader(boom)), "aaaa", boom},
		{"timeout after the first read", iotest.TimeoutReader(iotest.OneByteReader(body(limit))), "a", iotest.ErrTimeout},
		{"over the limit before an error", io.MultiReader(body(limit+1), iotest.ErrReader(boom)), strings.Repeat("a", limit+1), ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadAll(nil, tc.r, limit)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("read %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadAllAppends(t *testing.T) {
	dst := append(make([]byte, 0, 64), "head:"...)
	got, err := ReadAll(dst, strings.NewReader("0123456789"), 10)
	if err != nil || string(got) != "head:0123456789" {
		t.Fatalf("got %q, %v; the limit counts only the bytes read", got, err)
	}
	if &got[0] != &dst[:1][0] {
		t.Error("a buffer with room was not reused")
	}
}

// TestReadAllStopsAtLimitPlusOne: a peer that never stops costs limit+1
// bytes, even into a buffer with room for far more.
func TestReadAllStopsAtLimitPlusOne(t *testing.T) {
	for _, dst := range [][]byte{nil, make([]byte, 0, 1<<16)} {
		r := &endless{}
		got, err := ReadAll(dst, r, 1000)
		if !errors.Is(err, ErrTooLarge) || len(got) != 1001 || r.read != 1001 {
			t.Errorf("cap %d: kept %d, asked the reader for %d, err %v; want 1001, 1001, ErrTooLarge", cap(dst), len(got), r.read, err)
		}
	}
}

func TestReadAllZeroLimit(t *testing.T) {
	if got, err := ReadAll(nil, strings.NewReader(""), 0); err != nil || len(got) != 0 {
		t.Errorf("empty body, limit 0: %q, %v", got, err)
	}
	if _, err := ReadAll(nil, strings.NewReader("x"), 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte, limit 0: err %v, want ErrTooLarge", err)
	}
	if _, err := ReadAll(nil, strings.NewReader("x"), -5); !errors.Is(err, ErrTooLarge) {
		t.Errorf("one byte, negative limit: err %v, want ErrTooLarge", err)
	}
}

func TestReadAllKeepsGrowth(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 5000)
	got, err := ReadAll(nil, bytes.NewReader(big), 1<<20)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	again, err := ReadAll(got[:0], bytes.NewReader(big[:100]), 1<<20)
	if err != nil || &again[0] != &got[0] {
		t.Errorf("a reused buffer that had room was reallocated (err %v)", err)
	}
}
