package labelguard

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testNonce = 0x6d6573686c6c6d31

func encodeSet(pairs ...[2]string) []byte {
	b := EmptyLabelSet(testNonce)
	for _, p := range pairs {
		b = AppendLabelPair(b, p[0], p[1])
	}
	return b
}

func decodeAll(b []byte) ([][2]string, error) {
	var out [][2]string
	_, err := DecodeLabelSet(b, func(_, m, t []byte) bool {
		out = append(out, [2]string{string(m), string(t)})
		return true
	})
	return out, err
}

// withHeader is a set's header followed by raw entry bytes.
func withHeader(entries ...byte) []byte { return append(EmptyLabelSet(testNonce), entries...) }

func TestDecodeLabelSet(t *testing.T) {
	long := strings.Repeat("x", MaxValueLen)
	for _, tc := range []struct {
		name string
		in   []byte
		want [][2]string
		bad  bool
	}{
		{"empty set", EmptyLabelSet(testNonce), nil, false},
		{"one pair", encodeSet([2]string{"llama", "sql-lora"}), [][2]string{{"llama", "sql-lora"}}, false},
		{"longest values", encodeSet([2]string{long, long}), [][2]string{{long, long}}, false},
		{"two pairs in order", encodeSet([2]string{"a", "b"}, [2]string{"meta-llama/L-3.1:8b", "unknown"}),
			[][2]string{{"a", "b"}, {"meta-llama/L-3.1:8b", "unknown"}}, false},
		{"no value at all", nil, nil, true},
		{"short header", []byte{1, 2, 3}, nil, true},
		{"another version", append([]byte{2}, withHeader(1, 'a', 1, 'b')[1:]...), nil, true},
		{"missing target", withHeader(1, 'a'), nil, true},
		{"truncated model", withHeader(5, 'a'), nil, true},
		{"truncated target", withHeader(1, 'a', 3, 'b'), nil, true},
		{"empty model", withHeader(0, 1, 'b'), nil, true},
		{"value past MaxValueLen", withHeader(append([]byte{MaxValueLen + 1}, strings.Repeat("x", MaxValueLen+1)+"\x01b"...)...), nil, true},
		{"label syntax in a value", withHeader(3, 'a', ';', 'b', 1, 'c'), nil, true},
		{"newline in a value", withHeader(1, '\n', 1, 'c'), nil, true},
		{"good pair then garbage", append(encodeSet([2]string{"a", "b"}), 7), [][2]string{{"a", "b"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(tc.in)
			require.Equal(t, tc.want, got)
			if tc.bad {
				require.ErrorIs(t, err, ErrLabelSet)
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestSplitLabelSet(t *testing.T) {
	nonce, entries, err := SplitLabelSet(encodeSet([2]string{"a", "b"}))
	require.NoError(t, err)
	require.Equal(t, uint64(testNonce), nonce)
	require.Equal(t, AppendLabelPair(nil, "a", "b"), entries)
}

func TestDecodeLabelSetStopsWhenAsked(t *testing.T) {
	n, err := DecodeLabelSet(encodeSet([2]string{"a", "b"}, [2]string{"c", "d"}, [2]string{"e", "f"}),
		func(_, m, _ []byte) bool { return string(m) != "c" })
	require.NoError(t, err)
	require.Equal(t, 2, n)
}

// The entry handed to the callback is exactly AppendLabelPair's output, so
// the Guard can use it as its cache key.
func TestDecodedEntryIsThePairKey(t *testing.T) {
	_, err := DecodeLabelSet(encodeSet([2]string{"m", "t-1"}), func(entry, _, _ []byte) bool {
		require.Equal(t, AppendLabelPair(nil, "m", "t-1"), entry)
		return true
	})
	require.NoError(t, err)
}

// FuzzDecodeLabelSet: any bytes (a corrupt or foreign shared value) decode
// without panicking, every value delivered is already a sanitised label
// value, and whatever decodes cleanly re-encodes to the same bytes.
func FuzzDecodeLabelSet(f *testing.F) {
	f.Add(EmptyLabelSet(testNonce))
	f.Add(encodeSet([2]string{"llama", "sql-lora"}, [2]string{"other", "unknown"}))
	f.Add(withHeader(200, 'a'))
	f.Add(withHeader(1, ';', 1, '='))
	f.Fuzz(func(t *testing.T, b []byte) {
		var again []byte
		_, err := DecodeLabelSet(b, func(entry, m, tgt []byte) bool {
			for _, v := range [][]byte{m, tgt} {
				if TagValue(string(v)) != string(v) {
					t.Fatalf("decoded an unsanitised value %q", v)
				}
			}
			if !bytes.Equal(entry, AppendLabelPair(nil, string(m), string(tgt))) {
				t.Fatalf("entry %q is not the encoding of (%q, %q)", entry, m, tgt)
			}
			again = AppendLabelPair(again, string(m), string(tgt))
			return true
		})
		if err == nil && !bytes.Equal(b[labelSetHeader:], again) {
			t.Fatalf("%q decoded cleanly but re-encodes as %q", b, again)
		}
	})
}
